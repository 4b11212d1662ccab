"""The compliance audit: one report of what exists in which tier, what violates the policy, and the log.

``run_audit`` collects the inventory (``storage_tiers/compliance/inventory.py``), reads and verifies the audit
log (``storage_tiers/compliance/audit_log.py``), derives the active legal holds from it and applies the rules
(``storage_tiers/compliance/violations.py``). The ``AuditReport`` it returns renders three ways:

* ``cli.audit_report_tables.print_report``: terminal tables;
* ``report_json``: a JSON document (``format: lakehouse.audit.report/1``, outlined in docs/compliance.md);
* ``report_html``: one self-contained HTML page — inline CSS and inline SVG, nothing fetched — with
  a coverage timeline per dataset × tier (whole retention, and the last 14 days where the hot tier's
  hours are visible), the violations, the legal holds, the audit-log summary and its verification.

``as_of`` evaluates ages as if it were that moment (e.g. to preview what the next purge must remove);
the audit log is read up to that moment, the inventory is always what exists now.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.fs as pafs

from common.events import format_optional_ts
from common.hot_store import HotStore
from common.settings import Settings
from storage_tiers.compliance.inventory import (
    DATASETS,
    TIERS,
    Inventory,
    PartitionInfo,
    collect_inventory,
)
from storage_tiers.compliance.violations import KINDS, Findings, Rules, find_violations

REPORT_FORMAT = "lakehouse.audit.report/1"
LOG_ENTRIES_SHOWN = 200  # newest log records listed in the table and the HTML page (the JSON has all)
RECENT_WINDOW = timedelta(days=14)


@dataclass
class LogSummary:
    location: str
    ok: bool
    records: int
    problems: list[str]
    head: dict[str, Any] | None
    entries: list[dict[str, Any]]  # up to as_of, oldest first
    active_holds: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(str(e.get("action")) for e in self.entries).items()))


@dataclass
class AuditReport:
    generated_at: datetime
    as_of: datetime
    inventory: Inventory
    policy: Any  # storage_tiers.policy.TierPolicy
    findings: Findings
    log: LogSummary


class _RecordsUpTo:
    """The audit log's records up to ``as_of``, shaped like ``AuditLog`` for ``holds.active_holds``."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self._records = records

    def records(self, strict: bool = False) -> list[dict[str, Any]]:
        return self._records  # already parsed: unreadable records are in the verification's problems


def _at(record: dict[str, Any]) -> datetime | None:
    text = record.get("at")
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def run_audit(
    settings: Settings,
    store: HotStore | None,
    *,
    policy: Any = None,
    log: Any = None,
    as_of: datetime | None = None,
    filesystem: pafs.FileSystem | None = None,
    rules: Rules | None = None,
    hot_error: str | None = None,
    tags: Callable[[str], dict[str, str]] | None = None,
) -> AuditReport:
    """Collect, verify and judge everything (see the module docstring); ``store`` None: hot tier not reachable."""
    from storage_tiers.compliance.audit_log import AuditLog
    from storage_tiers.compliance.holds import active_holds
    from storage_tiers.policy import load_policy

    generated_at = datetime.now(UTC)
    as_of = (as_of or generated_at).astimezone(UTC)
    policy = policy if policy is not None else load_policy(settings)
    log = log if log is not None else AuditLog(settings, filesystem)
    cold_tags = dict(getattr(policy, "s3_tags", {}) or {}) or None
    inventory = collect_inventory(
        settings, store, filesystem, tags=tags, with_tenants=bool(getattr(policy, "tenant_retention", {})),
        now=generated_at, hot_error=hot_error, cold_tags=cold_tags)
    verification = log.verify()
    from storage_tiers.compliance.table_history import verify_tables

    try:  # the log's table commits against the tables' history: a disagreement means the log (or a table) was altered
        table_problems = verify_tables(settings, log.records()).problems
    except Exception:  # an unreadable table: the inventory reports it (its tier's error), nothing to compare here
        table_problems = []
    verification.problems += [f"table history: {p}" for p in table_problems]
    verification.ok = verification.ok and not table_problems
    records = [r for r in log.records() if (_at(r) or as_of) <= as_of]
    holds = active_holds(_RecordsUpTo(records))
    findings = find_violations(inventory, policy, holds, now=as_of, audit_records=records,
                               audit_problems=verification.problems, rules=rules, cold_tags=cold_tags)
    summary = LogSummary(
        location=str(getattr(log, "location", "")), ok=verification.ok, records=verification.records,
        problems=list(verification.problems), head=verification.head, entries=records,
        active_holds=[{"hold_id": h.hold_id, "tenant": h.tenant, "start": h.start.isoformat(),
                       "end": h.end.isoformat(), "reason": h.reason, "placed_at": h.placed_at,
                       "placed_by": h.placed_by} for h in holds],
    )
    return AuditReport(generated_at, as_of, inventory, policy, findings, summary)


# ----------------------------------------------------------------------------------------------- JSON




def _partition_json(part: PartitionInfo, grain: str) -> dict[str, Any]:
    return {"partition": part.key, "start": format_optional_ts(part.start, "auto"), "rows": part.rows,
            "bytes": part.bytes, "files": part.files, "min_event_time": format_optional_ts(part.min_event_time, "auto"),
            "max_event_time": format_optional_ts(part.max_event_time, "auto"), "location": part.location,
            "notes": list(part.notes)}


def horizon_days(policy: Any, dataset: str, tier: str) -> int | None:
    spec = policy.datasets[dataset].tier(tier) if dataset in policy.datasets else None
    return None if spec is None else spec.horizon.days


def report_json(report: AuditReport) -> dict[str, Any]:
    """The whole report as plain JSON types (the schema is outlined in docs/compliance.md)."""
    policy = report.policy
    inventory = []
    for tier in report.inventory.tiers:
        inventory.append({
            "dataset": tier.dataset, "tier": tier.tier, "location": tier.location, "layout": tier.grain,
            "horizon_days": horizon_days(policy, tier.dataset, tier.tier), "error": tier.error,
            "partitions": len(tier.partitions), "rows": tier.rows, "bytes": tier.bytes,
            "min_event_time": format_optional_ts(tier.min_event_time, "auto"),
            "max_event_time": format_optional_ts(tier.max_event_time, "auto"),
            "oldest_partition": tier.partitions[0].key if tier.partitions else None,
            "newest_partition": tier.partitions[-1].key if tier.partitions else None,
            "partition_list": [_partition_json(p, tier.grain) for p in tier.partitions],
        })
    return {
        "format": REPORT_FORMAT,
        "generated_at": format_optional_ts(report.generated_at, "auto"),
        "as_of": format_optional_ts(report.as_of, "auto"),
        "lake_uri": report.inventory.lake_uri,
        "compliant": report.findings.ok,
        "policy": {
            "source": getattr(policy, "source", ""),
            "default_retention_days": policy.default_retention.days,
            "tenant_retention_days": {t: d.days for t, d in (getattr(policy, "tenant_retention", {}) or {}).items()},
            "datasets": {name: [{"tier": s.tier, "horizon_days": s.horizon.days, "location": s.location}
                                for s in ds.tiers] for name, ds in policy.datasets.items()},
        },
        "inventory": inventory,
        "violations": {
            "counts": report.findings.counts(),
            "items": [v.as_dict() for v in report.findings.violations],
        },
        "held": [h.as_dict() for h in report.findings.held],
        "audit_log": {
            "location": report.log.location,
            "verified": report.log.ok,
            "records": report.log.records,
            "problems": report.log.problems,
            "head": report.log.head,
            "counts": report.log.counts(),
            "active_holds": report.log.active_holds,
            "entries": report.log.entries,
        },
    }


# ------------------------------------------------------------------- text shared with the terminal tables


def size_text(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def short_time(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def age_text(report: AuditReport, value: datetime | None) -> str:
    if value is None:
        return ""
    days = (report.as_of - value).total_seconds() / 86400
    return f"{days:.1f} d" if days < 10 else f"{days:.0f} d"


# ----------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2330;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
.meta{color:#5b6475}.badge{display:inline-block;padding:3px 10px;border-radius:12px;font-weight:600;color:#fff}
.ok{background:#1f8a4c}.bad{background:#c0392b}table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border-bottom:1px solid #e6e9ef;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f4f6f9}
td.n{text-align:right;font-variant-numeric:tabular-nums}.err{color:#c0392b}.small{font-size:12px;color:#5b6475}
svg text{font:11px system-ui,sans-serif;fill:#1d2330}.legend span{display:inline-block;margin-right:14px}
.sw{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:middle}
"""
_TIER_COLOURS = {"hot": "#e8663d", "warm": "#e0b43c", "cold": "#4a8fd6"}
_MARK_COLOURS = {"gap": "#c0392b", "past_retention": "#7b1fa2", "held": "#8d6e63", "other": "#111"}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _runs(parts: Sequence[PartitionInfo]) -> list[tuple[datetime, datetime, int]]:
    """Contiguous partitions merged into (start, end, rows) runs: a year of hours draws as a few rectangles."""
    runs: list[list[Any]] = []
    for p in sorted(parts, key=lambda p: p.start):
        if runs and runs[-1][1] >= p.start:
            runs[-1][1] = max(runs[-1][1], p.end)
            runs[-1][2] += p.rows
        else:
            runs.append([p.start, p.end, p.rows])
    return [(a, b, n) for a, b, n in runs]


def timeline_svg(report: AuditReport, start: datetime, end: datetime, title: str) -> str:
    """One inline SVG: a lane per dataset × tier with its partitions, the tier's horizon, violations and holds."""
    label_w, width, lane_h, top = 170, 1100, 22, 34
    lanes = [(d, t) for d in DATASETS for t in TIERS if report.inventory.get(d, t) is not None]
    height = top + lane_h * len(lanes) + 26
    span = (end - start).total_seconds()
    plot_w = width - label_w - 10

    def x(t: datetime) -> float:
        clamped = min(max(t, start), end)
        return label_w + plot_w * (clamped - start).total_seconds() / span

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{_e(title)}" class="timeline">', f'<text x="0" y="14" font-weight="600">{_e(title)}</text>']
    ticks = _ticks(start, end)
    for t, label in ticks:
        out.append(f'<line x1="{x(t):.1f}" y1="{top - 6}" x2="{x(t):.1f}" y2="{height - 22}" stroke="#eef0f4"/>')
        out.append(f'<text x="{x(t):.1f}" y="{height - 8}" text-anchor="middle">{_e(label)}</text>')
    retention_cut = report.as_of - report.policy.default_retention
    for i, (dataset, tier) in enumerate(lanes):
        inv = report.inventory.get(dataset, tier)
        assert inv is not None
        y = top + i * lane_h
        out.append(f'<text x="0" y="{y + 15}">{_e(dataset)} · {_e(tier)}</text>')
        horizon = horizon_days(report.policy, dataset, tier)
        if horizon is not None:  # the age band this tier may hold
            band_start = report.as_of - timedelta(days=horizon)
            out.append(f'<rect x="{x(band_start):.1f}" y="{y + 2}" width="{max(x(end) - x(band_start), 0):.1f}" '
                       f'height="{lane_h - 4}" fill="#f3f6fb"><title>{_e(tier)} horizon {horizon} days</title></rect>')
        if inv.error:
            out.append(f'<text x="{label_w + 4}" y="{y + 15}" style="fill:#c0392b">not readable: '
                       f'{_e(inv.error[:120])}</text>')
        for a, b, rows in _runs(inv.partitions):
            if b <= start or a >= end:
                continue
            w = max(x(b) - x(a), 1.0)
            out.append(f'<rect x="{x(a):.1f}" y="{y + 5}" width="{w:.1f}" height="{lane_h - 10}" '
                       f'fill="{_TIER_COLOURS[tier]}"><title>{_e(dataset)} {_e(tier)}: {short_time(a)} – '
                       f'{short_time(b)} UTC, '
                       f'{rows:,} rows</title></rect>')
        for v in report.findings.violations:
            if v.dataset != dataset or v.start is None or v.end is None or (v.tier not in (None, tier)):
                continue
            if v.end <= start or v.start >= end:
                continue
            colour = _MARK_COLOURS.get(v.kind, _MARK_COLOURS["other"])
            w = max(x(v.end) - x(v.start), 2.0)
            out.append(f'<rect x="{x(v.start):.1f}" y="{y + 1}" width="{w:.1f}" height="3" fill="{colour}">'
                       f'<title>{_e(v.kind)} ({_e(v.code)}): {short_time(v.start)} – {short_time(v.end)} UTC, '
                       f'{_e(v.detail)}</title></rect>')
        for h in report.findings.held:
            if h.dataset == dataset and h.tier == tier and h.end > start and h.start < end:
                w = max(x(h.end) - x(h.start), 2.0)
                out.append(f'<rect x="{x(h.start):.1f}" y="{y + lane_h - 4}" width="{w:.1f}" height="3" '
                           f'fill="{_MARK_COLOURS["held"]}"><title>held: {_e(", ".join(h.holds))}</title></rect>')
    if start <= retention_cut <= end:
        out.append(f'<line x1="{x(retention_cut):.1f}" y1="{top - 6}" x2="{x(retention_cut):.1f}" '
                   f'y2="{height - 22}" stroke="#7b1fa2" stroke-dasharray="4 3"><title>retention limit '
                   f'{short_time(retention_cut)}</title></line>')
    out.append(f'<line x1="{x(report.as_of):.1f}" y1="{top - 6}" x2="{x(report.as_of):.1f}" y2="{height - 22}" '
               f'stroke="#1d2330"><title>as of {short_time(report.as_of)}</title></line>')
    out.append("</svg>")
    return "\n".join(out)


def _ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    span = end - start
    if span > timedelta(days=3 * 365):
        first = datetime(start.year + 1, 1, 1, tzinfo=UTC)
        return [(datetime(y, 1, 1, tzinfo=UTC), str(y)) for y in range(first.year, end.year + 1)]
    if span > timedelta(days=60):
        out, t = [], datetime(start.year, start.month, 1, tzinfo=UTC)
        while t <= end:
            if t >= start:
                out.append((t, t.strftime("%Y-%m")))
            t = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=UTC)
        return out[:: max(1, len(out) // 12)]
    t = start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    days = []
    while t <= end:
        days.append((t, t.strftime("%m-%d")))
        t += timedelta(days=1)
    return days[:: max(1, len(days) // 14)]


def report_html(report: AuditReport) -> str:
    """The report as one self-contained HTML page (no scripts, no external resources)."""
    f = report.findings
    as_of = report.as_of
    oldest = min((t.partitions[0].start for t in report.inventory.tiers if t.partitions), default=as_of)
    full_start = min(oldest, as_of - report.policy.default_retention) - timedelta(days=30)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Compliance audit — {_e(short_time(as_of))} UTC</title>", f"<style>{_CSS}</style></head><body>",
        "<h1>Compliance audit: retention and tiers</h1>",
        f'<p class="meta">Lake <code>{_e(report.inventory.lake_uri)}</code> · as of {_e(short_time(as_of))} UTC · '
        f'generated {_e(short_time(report.generated_at))} UTC · policy <code>{_e(getattr(report.policy, "source", ""))}'
        f'</code> · default retention {report.policy.default_retention.days} days</p>',
        f'<p><span class="badge {"ok" if f.ok else "bad"}">{"COMPLIANT" if f.ok else "NOT COMPLIANT"}</span> '
        f'<span class="badge {"ok" if report.log.ok else "bad"}">audit log '
        f'{"verified" if report.log.ok else "NOT INTACT"}</span></p>',
        "<h2>Coverage timeline</h2>",
        '<p class="legend small">' + "".join(
            f'<span><i class="sw" style="background:{c}"></i>{_e(t)} partitions</span>'
            for t, c in _TIER_COLOURS.items())
        + "".join(f'<span><i class="sw" style="background:{c}"></i>{_e(k.replace("_", " "))}</span>'
                  for k, c in _MARK_COLOURS.items() if k != "other")
        + '<span><i class="sw" style="background:#f3f6fb;border:1px solid #dde2ea"></i>age the tier may hold</span>'
        "<span>dashed line: retention limit · solid line: as of</span></p>",
        timeline_svg(report, full_start, as_of + timedelta(days=15), "Whole retention period"),
        timeline_svg(report, as_of - RECENT_WINDOW, as_of + timedelta(hours=6), "Last 14 days (hours)"),
        "<h2>Inventory</h2>", _inventory_table(report),
        f"<h2>Violations ({sum(f.counts().values())})</h2>", _violations_html(report),
        "<h2>Legal holds</h2>", _holds_html(report),
        "<h2>Audit log</h2>", _log_html(report),
        '<p class="small">Definitions of each violation: docs/compliance.md, "Violations". '
        "This page is generated by <code>lakehouse audit --format html</code>.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{v:,}</td>' if i in numeric and isinstance(v, int) else f"<td>{_e(v)}</td>"
                         for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _inventory_table(report: AuditReport) -> str:
    rows = []
    for t in report.inventory.tiers:
        horizon = horizon_days(report.policy, t.dataset, t.tier)
        rows.append([t.dataset, t.tier, t.location, f"{horizon} d" if horizon is not None else "",
                     len(t.partitions), t.rows, size_text(t.bytes), short_time(t.min_event_time),
                     short_time(t.max_event_time),
                     age_text(report, t.min_event_time), t.error or ""])
    return _table(["dataset", "tier", "location", "horizon", "partitions", "rows", "bytes", "oldest event (UTC)",
                   "newest event (UTC)", "oldest age", "error"], rows, numeric={4, 5})


def _violations_html(report: AuditReport) -> str:
    counts = report.findings.counts()
    summary = _table(list(KINDS), [[counts[k] for k in KINDS]], numeric=set(range(len(KINDS))))
    if not report.findings.violations:
        return summary + "<p>No violation.</p>"
    rows = [[v.kind, v.code, v.dataset, v.tier or "every tier", short_time(v.start), short_time(v.end), v.partitions,
             v.rows, v.detail] for v in report.findings.violations]
    return summary + _table(["kind", "rule", "dataset", "tier", "from (UTC)", "to (UTC)", "partitions", "rows",
                             "detail"], rows, numeric={6, 7})


def _holds_html(report: AuditReport) -> str:
    active = report.log.active_holds
    out = _table(["hold", "tenant", "from", "to", "reason", "placed at", "placed by"],
                 [[h["hold_id"], h["tenant"], h["start"], h["end"], h["reason"], h["placed_at"], h["placed_by"]]
                  for h in active]) if active else "<p>No active legal hold.</p>"
    if report.findings.held:
        out += "<p>Data past retention kept because of a hold:</p>" + _table(
            ["dataset", "tier", "from (UTC)", "to (UTC)", "partitions", "rows", "holds"],
            [[h.dataset, h.tier, short_time(h.start), short_time(h.end), h.partitions, h.rows, ", ".join(h.holds)]
             for h in report.findings.held], numeric={4, 5})
    return out


def _log_html(report: AuditReport) -> str:
    log = report.log
    status = ('<p><b>Verified</b>: every record\'s hash, the chain of links and the anchor are intact '
              f"({log.records} record(s)).</p>" if log.ok else
              "<p class=\"err\"><b>NOT INTACT</b>:</p><ul>" + "".join(f"<li>{_e(p)}</li>" for p in log.problems)
              + "</ul>")
    head = log.head or {}
    status += f'<p class="small">Location <code>{_e(log.location)}</code>; anchor seq {_e(head.get("seq"))}, ' \
              f'hash <code>{_e(head.get("hash"))}</code>.</p>'
    counts = log.counts()
    status += _table(list(counts) or ["records"], [list(counts.values()) or [0]], numeric=set(range(len(counts))))
    shown = list(reversed(log.entries[-LOG_ENTRIES_SHOWN:]))
    if shown:
        status += f"<p>Newest {len(shown)} of {len(log.entries)} record(s) (the JSON report has all):</p>"
        status += _table(["seq", "at (UTC)", "action", "dataset", "partition", "from", "to", "rows", "bytes", "run",
                          "reason"],
                         [[e.get("seq"), e.get("at"), e.get("action"), e.get("dataset"), e.get("partition"),
                           e.get("tier_from") or "", e.get("tier_to") or "", e.get("rows", 0), e.get("bytes", 0),
                           e.get("run_id") or "", e.get("reason") or ""] for e in shown], numeric={0, 7, 8})
    return status


def reports_path(settings: Settings) -> str:
    """Where published reports live: ``<lake>/audit/reports/`` (next to the audit log, ``<lake>/audit/log/``)."""
    return settings.effective_lake_uri.rstrip("/") + "/audit/reports"


def publish_report(
    settings: Settings, report: AuditReport, filesystem: pafs.FileSystem | None = None
) -> dict[str, str]:
    """Write the report as JSON and HTML into the lake (``<stamp>.json|html`` and ``latest.json|html``).

    Each object is written whole (one PUT on S3, write-then-rename locally), so readers never see a
    partial report. Returns the URIs written, by name.
    """
    import json

    from common.lake import fs_path, lake_filesystem, lake_uri
    from common.lake_io import publish

    filesystem = filesystem or lake_filesystem(settings)
    folder = fs_path(reports_path(settings))
    stamp = report.generated_at.strftime("%Y-%m-%dT%H%M%SZ")
    bodies = {"json": (json.dumps(report_json(report), indent=1, default=str) + "\n").encode(),
              "html": report_html(report).encode()}
    written = {}
    for ext, body in bodies.items():
        for name in (stamp, "latest"):
            path = f"{folder}/{name}.{ext}"
            publish(filesystem, path, body)
            written[f"{name}.{ext}"] = lake_uri(filesystem, path)
    return written
