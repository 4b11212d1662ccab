"""The tier policy: per dataset, which tiers hold it for how long, where, in which layout and codec.

One YAML file (``storage_tiers/tiers.yaml`` by default, ``LAKEHOUSE_TIER_POLICY`` to point elsewhere)
is read and validated once at start, so a typo fails the run with the file, the key and what is
accepted instead of silently keeping data too long or dropping it too early. The movers and the purge
only read the ``TierPolicy`` object; nothing else in the code base hard-codes a horizon.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from common.settings import Settings

DEFAULT_POLICY_FILE = Path(__file__).with_name("tiers.yaml")
DEFAULT_HISTORY_WINDOW = timedelta(days=7)  # vacuum.history when the policy file does not say
DATASETS = ("events", "rollups_1m", "rollups_hourly", "rollups_daily")
TIER_ORDER = ("hot", "warm", "cold")
LAYOUTS = ("hour", "day")
COMPRESSIONS = ("zstd", "snappy", "gzip", "lz4", "none")
# Where each dataset's tier lives is a contract other code reads (common/lake.py, the hot-tier migrations),
# so the policy states it and is checked against it rather than moving it.
LOCATIONS: dict[tuple[str, str], str] = {
    ("events", "hot"): "events_raw",
    ("events", "warm"): "archive/events",
    ("events", "cold"): "cold/events",
    ("rollups_1m", "hot"): "rollups_1m",
    ("rollups_hourly", "hot"): "rollups_1h",
    ("rollups_hourly", "warm"): "warm/rollups_hourly",
    ("rollups_daily", "cold"): "cold/rollups_daily",
}
LAYOUT_OF_TIER = {"hot": ("hour",), "warm": ("hour",), "cold": ("day",)}
_DURATION = re.compile(r"^\s*(\d+)\s*([hdwy])\s*$")
_DAYS_PER_UNIT = {"d": 1, "w": 7}


class PolicyError(ValueError):
    """The policy file is invalid; the message names the file, the key and what is accepted."""


@dataclass(frozen=True)
class TierSpec:
    tier: str  # hot | warm | cold
    horizon: timedelta  # data whose end is older than this leaves the tier
    location: str
    layout: str
    compression: str


@dataclass(frozen=True)
class DatasetPolicy:
    name: str
    tiers: list[TierSpec]

    def tier(self, name: str) -> TierSpec | None:
        return next((t for t in self.tiers if t.tier == name), None)


@dataclass(frozen=True)
class TierPolicy:
    source: str
    datasets: dict[str, DatasetPolicy]
    default_retention: timedelta
    tenant_retention: dict[str, timedelta] = field(default_factory=dict)
    s3_tags: dict[str, str] = field(default_factory=dict)
    history_window: timedelta = DEFAULT_HISTORY_WINDOW  # vacuum keeps what time travel within it reads

    def retention_for(self, tenant: str) -> timedelta:
        """How long ``tenant``'s data is kept (its own setting, else the default)."""
        return self.tenant_retention.get(tenant, self.default_retention)

    @property
    def longest_retention(self) -> timedelta:
        return max([self.default_retention, *self.tenant_retention.values()])

    @property
    def shortest_retention(self) -> timedelta:
        return min([self.default_retention, *self.tenant_retention.values()])

    def tier_for(self, dataset: str, age: timedelta) -> str | None:
        """The tier that should hold data of ``dataset`` this old; None once past the last tier's horizon."""
        for spec in self.datasets[dataset].tiers:
            if age < spec.horizon:
                return spec.tier
        return None

    def horizon(self, dataset: str, tier: str) -> timedelta | None:
        spec = self.datasets[dataset].tier(tier)
        return None if spec is None else spec.horizon


def parse_duration(text: Any, where: str) -> timedelta:
    """``7d``, ``36h``, ``2w``, ``7y`` (a year is 365.25 days, rounded to whole days: 7y = 2557 d)."""
    match = _DURATION.match(str(text))
    if match is None:
        raise PolicyError(f"{where}: {text!r} is not a duration; use <n>h, <n>d, <n>w or <n>y (e.g. 7d, 365d, 7y)")
    n, unit = int(match[1]), match[2]
    if n <= 0:
        raise PolicyError(f"{where}: the duration must be positive, got {text!r}")
    if unit == "h":
        return timedelta(hours=n)
    if unit == "y":
        return timedelta(days=round(n * 365.25))
    return timedelta(days=n * _DAYS_PER_UNIT[unit])


def policy_file(settings: Settings) -> Path:
    return Path(settings.tier_policy) if settings.tier_policy else DEFAULT_POLICY_FILE


def load_policy(settings: Settings) -> TierPolicy:
    """Read and validate the policy file named by ``LAKEHOUSE_TIER_POLICY`` (default: the packaged one)."""
    path = policy_file(settings)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(
            f"{path}: cannot read the tier policy ({exc.strerror}); set LAKEHOUSE_TIER_POLICY to an existing file "
            f"or unset it to use {DEFAULT_POLICY_FILE}"
        ) from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from exc
    return parse_policy(document, str(path))


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _unknown(value: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(value) - allowed)
    if extra:
        raise PolicyError(f"{where}: unknown key(s) {extra}; accepted: {sorted(allowed)}")


def parse_policy(document: Any, source: str) -> TierPolicy:
    """Validate a policy document (the parsed YAML); errors read ``<file>: <key path>: <problem>``."""
    root = _mapping(document, f"{source}: top level")
    _unknown(root, {"version", "retention", "vacuum", "cold_marking", "datasets"}, f"{source}: top level")
    if root.get("version") != 1:
        raise PolicyError(f"{source}: version: expected 1, got {root.get('version')!r}")
    retention = _mapping(root.get("retention", {}), f"{source}: retention")
    _unknown(retention, {"default", "tenants"}, f"{source}: retention")
    default_retention = parse_duration(retention.get("default", "7y"), f"{source}: retention.default")
    tenants = _mapping(retention.get("tenants") or {}, f"{source}: retention.tenants")
    tenant_retention = {str(t): parse_duration(v, f"{source}: retention.tenants.{t}") for t, v in tenants.items()}
    vacuum = _mapping(root.get("vacuum") or {}, f"{source}: vacuum")
    _unknown(vacuum, {"history"}, f"{source}: vacuum")
    history_window = parse_duration(vacuum.get("history", "7d"), f"{source}: vacuum.history")
    marking = _mapping(root.get("cold_marking") or {}, f"{source}: cold_marking")
    _unknown(marking, {"s3_tags"}, f"{source}: cold_marking")
    tags = _mapping(marking.get("s3_tags") or {}, f"{source}: cold_marking.s3_tags")
    datasets_doc = _mapping(root.get("datasets"), f"{source}: datasets")
    _unknown(datasets_doc, set(DATASETS), f"{source}: datasets")
    missing = [d for d in DATASETS if d not in datasets_doc]
    if missing:
        raise PolicyError(f"{source}: datasets: missing {missing}; every dataset of {list(DATASETS)} needs its tiers")
    datasets = {name: _dataset(name, datasets_doc[name], source) for name in DATASETS}
    s3_tags = {str(k): str(v) for k, v in tags.items()}
    policy = TierPolicy(source, datasets, default_retention, tenant_retention, s3_tags, history_window)
    for name, dataset in datasets.items():
        last = dataset.tiers[-1]
        if last.tier != "cold":
            continue  # ends by handing over to another dataset (1-minute → raw events, hourly → daily rollups)
        for tenant, keep in [("retention.default", default_retention), *tenant_retention.items()]:
            if keep > last.horizon:
                raise PolicyError(
                    f"{source}: retention {'' if tenant == 'retention.default' else 'tenants.'}{tenant}: "
                    f"{keep.days} days is longer than the last tier of {name} keeps data "
                    f"({last.tier}, {last.horizon.days} days); raise datasets.{name} {last.tier} horizon too"
                )
    return policy


def _dataset(name: str, value: Any, source: str) -> DatasetPolicy:
    where = f"{source}: datasets.{name}"
    body = _mapping(value, where)
    _unknown(body, {"tiers"}, where)
    tiers_doc = body.get("tiers")
    if not isinstance(tiers_doc, list) or not tiers_doc:
        raise PolicyError(f"{where}.tiers: expected a non-empty list of tiers (hot, warm, cold in that order)")
    tiers = [_tier(name, i, t, f"{where}.tiers[{i}]") for i, t in enumerate(tiers_doc)]
    order = [TIER_ORDER.index(t.tier) for t in tiers]
    if order != sorted(set(order)):
        raise PolicyError(f"{where}.tiers: tiers must appear once each in the order hot, warm, cold; "
                          f"got {[t.tier for t in tiers]}")
    for before, after in zip(tiers, tiers[1:], strict=False):
        if after.horizon <= before.horizon:
            raise PolicyError(f"{where}.tiers: the {after.tier} horizon ({after.horizon.days} days) must be longer "
                              f"than the {before.tier} horizon ({before.horizon.days} days): data moves on with age")
    return DatasetPolicy(name, tiers)


def _tier(dataset: str, index: int, value: Any, where: str) -> TierSpec:
    body = _mapping(value, where)
    _unknown(body, {"tier", "horizon", "location", "layout", "compression"}, where)
    tier = body.get("tier")
    if tier not in TIER_ORDER:
        raise PolicyError(f"{where}.tier: {tier!r} is not a tier; accepted: {list(TIER_ORDER)}")
    expected = LOCATIONS.get((dataset, tier))
    if expected is None:
        allowed = [t for (d, t) in LOCATIONS if d == dataset]
        raise PolicyError(f"{where}.tier: {dataset} has no {tier} tier in this lakehouse; accepted: {allowed}")
    location = body.get("location", expected)
    if location != expected:
        raise PolicyError(f"{where}.location: {location!r}; the {tier} tier of {dataset} lives in {expected!r} "
                          "(fixed by common/lake.py and the hot-tier migrations), write that")
    layout = body.get("layout", LAYOUT_OF_TIER[tier][0])
    if layout not in LAYOUT_OF_TIER[tier]:
        raise PolicyError(f"{where}.layout: {layout!r}; accepted for the {tier} tier: {list(LAYOUT_OF_TIER[tier])}")
    compression = str(body.get("compression", "lz4" if tier == "hot" else "zstd"))
    if compression not in COMPRESSIONS:
        raise PolicyError(f"{where}.compression: {compression!r}; accepted: {list(COMPRESSIONS)}")
    if "horizon" not in body:
        raise PolicyError(f"{where}.horizon: missing; give how old data may get in this tier, e.g. 7d or 365d")
    return TierSpec(tier, parse_duration(body["horizon"], f"{where}.horizon"), location, layout, compression)
