"""Retention compliance as pure logic: inventory + policy + legal holds + audit log + now → violations.

Nothing here reads a file or a service, so every rule is unit-tested on hand-made inventories
(``tests/unit/test_violations.py``). Ages follow the policy file: the age of a partition is
``now - end of the partition`` (the age of the youngest data it may hold).

Violations (``Violation.kind``), each with a short ``code`` saying which rule fired:

``past_retention``
    A partition, in any tier, older than the retention of the data it holds plus ``purge_grace``
    (the purge runs daily), and not under an active legal hold. The retention is the shortest that
    applies: the default, or a tenant's own one if that tenant may be in the partition (from the
    tenant ranges of the Parquet statistics; where the inventory does not know the tenants — the hot
    tier — every tenant may be). A partition that would be past retention but overlaps an active hold
    of a tenant it may hold is reported as *held*, not as a violation.
``gap``
    Data that should exist but is in no tier. The time axis of a dataset is cut into units of its
    finest layout (hours, or days for ``rollups_daily``); only units that ended at least
    ``copy_grace`` ago and are younger than the default retention and than the dataset's last tier
    horizon are judged. A unit is *expected* when (``coverage``) it lies between the dataset's oldest
    and newest unit present in any tier and — for the rollup datasets, which have no partition for an
    hour without events — the events of that unit are known to have rows; or when (``audit_log``)
    the audit log's latest record of that partition says it was written to one of the dataset's tiers
    (move, compaction, cold marking, restatement) and not purged since (a move into a tier the
    dataset does not have — warm hourly rollups folded into the cold daily rollups — expects nothing).
    An expected unit missing in every tier of the dataset is a gap; consecutive units form one gap.
``wrong_tier``
    ``not_moved``: a partition still in a tier past that tier's horizon plus ``move_grace`` (the
    movers run daily), the last tier excepted (past it, the data is past retention).
    ``moved_early``: a partition in the cold tier younger than the previous tier's horizon while the
    previous tier no longer holds it. ``unmarked``: a cold object without the policy's cold tags
    (S3 lifecycle rules would not apply to it).
``hot_without_warm``
    A hot partition that ended at least ``copy_grace`` ago with no copy in a later tier
    (``missing``); for raw events, whose hot and warm rows are the same rows, also a warm copy with
    fewer rows than the hot partition (``incomplete``).
``purged_but_present``
    The audit log's latest record of a partition is a purge, yet the partition is still in that tier.
``inventory_incomplete``
    A tier could not be read (its error is the detail): the audit cannot vouch for it.
``audit_log_altered``
    ``AuditLog.verify`` found a problem (each problem is one violation).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from common.events import format_optional_ts
from storage_tiers.compliance.inventory import DAY, HOUR, Inventory, PartitionInfo, TierInventory, grain_delta

KINDS = ("past_retention", "gap", "wrong_tier", "hot_without_warm", "purged_but_present", "inventory_incomplete",
         "audit_log_altered")
WRITE_ACTIONS = {"move", "compact_cold", "mark_cold", "restate"}
# Datasets whose hot and warm tiers hold the very same rows (a warm copy may not have fewer).
SAME_ROWS_IN_HOT_AND_WARM = {"events"}
# Rollup datasets: an hour or day is expected only when the events of it have rows.
DERIVED_FROM_EVENTS = {"rollups_1m", "rollups_hourly", "rollups_daily"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PARTITION_TEXT = re.compile(r"^(?:.*/)?(?:dt=)?(\d{4}-\d{2}-\d{2})(?:(?:/hour=|T|-| )(\d{2})(?::00)?)?$")


class TierSpecLike(Protocol):
    tier: str
    horizon: timedelta


class DatasetPolicyLike(Protocol):
    tiers: Sequence[Any]


class PolicyLike(Protocol):
    """What the rules read of ``storage_tiers.policy.TierPolicy``."""

    datasets: dict[str, Any]
    default_retention: timedelta
    tenant_retention: dict[str, timedelta]

    def retention_for(self, tenant: str) -> timedelta: ...


class HoldLike(Protocol):
    """What the rules read of ``storage_tiers.compliance.holds.LegalHold``: a tenant's inclusive UTC day range."""

    hold_id: str
    tenant: str
    start: date
    end: date


@dataclass(frozen=True)
class Rules:
    """Slack for the jobs that keep the tiers in shape, so a report never flags work that is simply not due yet."""

    move_grace: timedelta = DAY  # the movers run daily
    purge_grace: timedelta = DAY  # the purge runs daily
    copy_grace: timedelta = timedelta(hours=3)  # archive of an hour: after its end + watermark + schedule + run


@dataclass(frozen=True)
class Violation:
    kind: str
    code: str
    dataset: str
    tier: str | None
    start: datetime | None
    end: datetime | None
    partitions: int
    rows: int
    bytes: int
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "code": self.code, "dataset": self.dataset, "tier": self.tier,
                "start": format_optional_ts(self.start, "auto"), "end": format_optional_ts(self.end, "auto"),
                "partitions": self.partitions, "rows": self.rows, "bytes": self.bytes, "detail": self.detail}


@dataclass(frozen=True)
class Held:
    """Partitions past retention that an active legal hold keeps (not violations; shown in the report)."""

    dataset: str
    tier: str
    start: datetime
    end: datetime
    partitions: int
    rows: int
    holds: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "tier": self.tier, "start": format_optional_ts(self.start, "auto"),
                "end": format_optional_ts(self.end, "auto"), "partitions": self.partitions, "rows": self.rows,
                "holds": list(self.holds)}


@dataclass
class Findings:
    now: datetime
    violations: list[Violation] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def counts(self) -> dict[str, int]:
        """Violations per kind (every kind present, zero included), counted in partitions (1 for log problems)."""
        counter: Counter[str] = Counter()
        for v in self.violations:
            counter[v.kind] += max(v.partitions, 1)
        return {kind: counter.get(kind, 0) for kind in KINDS}




def parse_partition(text: str) -> tuple[datetime, timedelta] | None:
    """A partition as the audit log or a folder names it → (start, grain): ``dt=2026-11-23/hour=10``, ``dt=…``."""
    match = _PARTITION_TEXT.match(text.strip())
    if match is None:
        return None
    day = datetime.strptime(match[1], "%Y-%m-%d").replace(tzinfo=UTC)
    return (day + timedelta(hours=int(match[2])), HOUR) if match[2] else (day, DAY)


# --------------------------------------------------------------------------------------------- rules


@dataclass
class _Hit:
    kind: str
    code: str
    dataset: str
    tier: str | None
    start: datetime
    end: datetime
    rows: int
    bytes: int
    detail: str


def find_violations(
    inventory: Inventory,
    policy: PolicyLike,
    holds: Iterable[HoldLike] = (),
    now: datetime | None = None,
    audit_records: Sequence[dict[str, Any]] = (),
    audit_problems: Sequence[str] = (),
    rules: Rules | None = None,
    cold_tags: dict[str, str] | None = None,
) -> Findings:
    """Every violation of the policy in ``inventory`` as of ``now`` (see the module docstring for the rules).

    ``audit_records`` (``AuditLog.records()``) add the partitions the log says must exist or be gone;
    ``audit_problems`` (``AuditLog.verify().problems``) become ``audit_log_altered`` violations.
    """
    rules = rules or Rules()
    now = (now or inventory.collected_at).astimezone(UTC)
    holds = list(holds)
    hits: list[_Hit] = []
    held: list[tuple[str, str, PartitionInfo, tuple[str, ...]]] = []
    findings = Findings(now=now)

    for tier in inventory.tiers:
        if tier.error:
            findings.violations.append(Violation("inventory_incomplete", "unreadable", tier.dataset, tier.tier, None,
                                                 None, 0, 0, 0, f"{tier.location}: {tier.error}"))
    for name, dataset in policy.datasets.items():
        specs = list(dataset.tiers)
        tiers = {spec.tier: inventory.get(name, spec.tier) for spec in specs}
        for index, spec in enumerate(specs):
            tier = tiers[spec.tier]
            if tier is None:
                continue
            for part in tier.partitions:
                age = now - part.end
                hits.extend(_retention(name, spec.tier, part, age, policy, holds, rules, held))
                hits.extend(_wrong_tier(name, specs, index, part, age, tiers, rules, cold_tags))
        hits.extend(_hot_without_warm(name, specs, tiers, now, rules))
        hits.extend(_gaps(name, specs, tiers, inventory, policy, now, rules, audit_records))
        hits.extend(_purged_but_present(name, tiers, audit_records))
    findings.violations.extend(_merge(hits))
    findings.violations.extend(
        Violation("audit_log_altered", "verify", "*", None, None, None, 0, 0, 0, problem) for problem in audit_problems)
    order = {k: i for i, k in enumerate(KINDS)}
    findings.violations.sort(key=lambda v: (order[v.kind], v.dataset, v.tier or "", v.start or _EPOCH))
    findings.held = _merge_held(held)
    return findings


def _retention_limit(part: PartitionInfo, policy: PolicyLike) -> tuple[timedelta, str | None]:
    """The shortest retention that applies to the tenants ``part`` may hold, and the tenant it comes from."""
    overrides = getattr(policy, "tenant_retention", {}) or {}
    limit, source = policy.default_retention, None
    for tenant, keep in overrides.items():
        if keep < limit and _may_hold(part, tenant):
            limit, source = keep, tenant
    return limit, source


def _may_hold(part: PartitionInfo, tenant: str) -> bool:
    if part.tenant_ranges is None:
        return True
    return any(low <= tenant <= high for low, high in part.tenant_ranges)


def _holds_over(part: PartitionInfo, holds: list[HoldLike]) -> tuple[str, ...]:
    first, last = part.start.date(), (part.end - timedelta(microseconds=1)).date()
    return tuple(h.hold_id for h in holds
                 if h.start <= last and first <= h.end and _may_hold(part, h.tenant))


def _retention(name: str, tier: str, part: PartitionInfo, age: timedelta, policy: PolicyLike,
               holds: list[HoldLike], rules: Rules, held: list) -> list[_Hit]:
    limit, tenant = _retention_limit(part, policy)
    if age <= limit + rules.purge_grace:
        return []
    held_by = _holds_over(part, holds)
    if held_by:
        held.append((name, tier, part, held_by))
        return []
    whose = f"tenant {tenant}'s" if tenant else "the default"
    return [_Hit("past_retention", f"retention_{limit.days}d", name, tier, part.start, part.end, part.rows,
                 part.bytes, f"older than {whose} retention of {limit.days} days and not under a legal hold")]


def _covers(tier: TierInventory | None, start: datetime, end: datetime) -> list[PartitionInfo]:
    if tier is None:
        return []
    return [p for p in tier.partitions if p.start < end and start < p.end]


def _wrong_tier(name: str, specs: list, index: int, part: PartitionInfo, age: timedelta,
                tiers: dict[str, TierInventory | None], rules: Rules, cold_tags: dict[str, str] | None) -> list[_Hit]:
    spec = specs[index]
    out = []
    if index < len(specs) - 1 and age > spec.horizon + rules.move_grace:
        following = specs[index + 1].tier
        out.append(_Hit("wrong_tier", "not_moved", name, spec.tier, part.start, part.end, part.rows, part.bytes,
                        f"older than the {spec.tier} horizon of {spec.horizon.days} days: should have moved to "
                        f"{following}"))
    if spec.tier == "cold" and index > 0:
        previous = specs[index - 1]
        if age < previous.horizon and not _covers(tiers.get(previous.tier), part.start, part.end):
            out.append(_Hit("wrong_tier", "moved_early", name, spec.tier, part.start, part.end, part.rows, part.bytes,
                            f"in cold although younger than the {previous.tier} horizon of {previous.horizon.days} "
                            f"days, and gone from {previous.tier}"))
    if spec.tier == "cold" and part.untagged_files:
        tags = ",".join(f"{k}={v}" for k, v in (cold_tags or {}).items()) or "the cold tags"
        out.append(_Hit("wrong_tier", "unmarked", name, spec.tier, part.start, part.end, part.rows, part.bytes,
                        f"cold objects without {tags}: storage lifecycle rules do not apply to them"))
    return out


def _hot_without_warm(name: str, specs: list, tiers: dict[str, TierInventory | None], now: datetime,
                      rules: Rules) -> list[_Hit]:
    hot = tiers.get("hot")
    later = [tiers[s.tier] for s in specs if s.tier != "hot" and tiers.get(s.tier) is not None]
    if hot is None or not later:
        return []
    out = []
    for part in hot.partitions:
        if part.end + rules.copy_grace > now:
            continue
        copies = [c for tier in later for c in _covers(tier, part.start, part.end)]
        if not copies:
            out.append(_Hit("hot_without_warm", "missing", name, "hot", part.start, part.end, part.rows, part.bytes,
                            "no copy in " + " or ".join(s.tier for s in specs if s.tier != "hot")))
        elif name in SAME_ROWS_IN_HOT_AND_WARM:
            warm = [c for c in copies if c.end - c.start == part.end - part.start]
            if warm and max(c.rows for c in warm) < part.rows:
                out.append(_Hit("hot_without_warm", "incomplete", name, "hot", part.start, part.end, part.rows,
                                part.bytes, "the warm copy has fewer rows than the hot partition"))
    return out


def _units(tier: TierInventory, unit: timedelta) -> set[datetime]:
    out: set[datetime] = set()
    for part in tier.partitions:
        t = part.start
        while t < part.end:
            out.add(t)
            t += unit
    return out


def _gaps(name: str, specs: list, tiers: dict[str, TierInventory | None], inventory: Inventory, policy: PolicyLike,
          now: datetime, rules: Rules, audit_records: Sequence[dict[str, Any]]) -> list[_Hit]:
    present_tiers = [t for t in tiers.values() if t is not None]
    if not present_tiers:
        return []
    unit = min(grain_delta(t.grain) for t in present_tiers)
    present: set[datetime] = set()
    for tier in present_tiers:
        present |= _units(tier, unit)
    lifetime = min(policy.default_retention, max(s.horizon for s in specs))

    def judged(start: datetime) -> bool:
        end = start + unit
        return end + rules.copy_grace <= now and now - end < lifetime

    expected: dict[datetime, str] = {}
    if present:
        first, last = min(present), max(present)
        with_events = _event_units(inventory, unit) if name in DERIVED_FROM_EVENTS else None
        t = first
        while t <= last:
            if t not in present and judged(t) and (with_events is None or t in with_events):
                expected[t] = "coverage"
            t += unit
    own_tiers = {s.tier for s in specs}
    for record in _latest_records(name, audit_records).values():
        parsed = parse_partition(str(record.get("partition", "")))
        if record.get("action") not in WRITE_ACTIONS or parsed is None:
            continue
        if record.get("tier_to") and record["tier_to"] not in own_tiers:
            continue  # moved out of the dataset (warm hourly rollups → cold daily rollups): nothing to expect
        t, grain = parsed
        while t < parsed[0] + grain:
            if t not in present and judged(t):
                expected[t] = f"audit_log seq {record.get('seq')}, {record.get('action')}"
            t += unit
    out = []
    for start, why in sorted(expected.items()):
        detail = ("expected between the data present before and after it" if why == "coverage"
                  else f"written per the audit log ({why.removeprefix('audit_log ')}), never purged")
        out.append(_Hit("gap", why.split(" ")[0], name, None, start, start + unit, 0, 0,
                        f"missing in every tier: {detail}"))
    return out


def _event_units(inventory: Inventory, unit: timedelta) -> set[datetime]:
    """Units (hours or days) in which the events dataset holds rows in some tier."""
    out: set[datetime] = set()
    for tier in inventory.of_dataset("events"):
        for part in tier.partitions:
            if part.rows <= 0:
                continue
            t = part.start
            while t < part.end:
                out.add(_floor(t, unit))
                t += min(unit, part.end - part.start)
    return out


def _floor(t: datetime, unit: timedelta) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0) if unit >= DAY else t.replace(
        minute=0, second=0, microsecond=0)


def _latest_records(name: str, audit_records: Sequence[dict[str, Any]]) -> dict[datetime, dict[str, Any]]:
    """The newest audit record of each partition of ``name`` (tier movements and purges only)."""
    latest: dict[tuple[datetime, timedelta], dict[str, Any]] = {}
    for record in sorted(audit_records, key=lambda r: r.get("seq", 0)):
        if record.get("dataset") != name or record.get("action") in {"hold_placed", "hold_released"}:
            continue
        parsed = parse_partition(str(record.get("partition", "")))
        if parsed is not None:
            latest[parsed] = record
    return {start: record for (start, _), record in latest.items()}


def _purged_but_present(name: str, tiers: dict[str, TierInventory | None],
                        audit_records: Sequence[dict[str, Any]]) -> list[_Hit]:
    out = []
    for record in _latest_records(name, audit_records).values():
        if record.get("action") != "purge":
            continue
        parsed = parse_partition(str(record.get("partition", "")))
        assert parsed is not None
        start, grain = parsed
        names = [record["tier_from"]] if record.get("tier_from") in tiers else list(tiers)
        for tier_name in names:
            for part in _covers(tiers.get(tier_name), start, start + grain):
                out.append(_Hit("purged_but_present", "purge", name, tier_name, part.start, part.end, part.rows,
                                part.bytes, f"purged per the audit log (seq {record.get('seq')}, "
                                            f"{record.get('at')}) but still present"))
    return out


# ------------------------------------------------------------------------------------------- merging


def _merge(hits: list[_Hit]) -> list[Violation]:
    """Consecutive partitions with the same finding become one range (a year of hours is one line, not 8,760)."""
    out: list[Violation] = []
    hits = sorted(hits, key=lambda h: (h.kind, h.dataset, h.tier or "", h.code, h.detail, h.start))
    current: Violation | None = None
    for h in hits:
        if (current is not None and (current.kind, current.dataset, current.tier, current.code, current.detail)
                == (h.kind, h.dataset, h.tier, h.code, h.detail) and current.end == h.start):
            current = Violation(current.kind, current.code, current.dataset, current.tier, current.start, h.end,
                                current.partitions + 1, current.rows + h.rows, current.bytes + h.bytes, current.detail)
            continue
        if current is not None:
            out.append(current)
        current = Violation(h.kind, h.code, h.dataset, h.tier, h.start, h.end, 1, h.rows, h.bytes, h.detail)
    if current is not None:
        out.append(current)
    return out


def _merge_held(held: list[tuple[str, str, PartitionInfo, tuple[str, ...]]]) -> list[Held]:
    out: list[Held] = []
    for name, tier, part, ids in sorted(held, key=lambda h: (h[0], h[1], h[3], h[2].start)):
        last = out[-1] if out else None
        if last is not None and (last.dataset, last.tier, last.holds, last.end) == (name, tier, ids, part.start):
            out[-1] = Held(name, tier, last.start, part.end, last.partitions + 1, last.rows + part.rows, ids)
        else:
            out.append(Held(name, tier, part.start, part.end, 1, part.rows, ids))
    return out
