"""Walks units' event sequences (what the engines' SQL hands over, already in (timestamp, event_id)
order) into funnel levels and path edges, and shapes the engines' aggregates into answers.

The SQL of either engine does the scanning, sessionizing and ordering; the step logic lives here once, so
the hot tier and the lake cannot disagree on it — the way PostHog moved its funnel steps out of SQL into
one function. Times are epoch milliseconds.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from serving.analytics.definitions import FunnelSpec, PathsSpec, RetentionSpec, SessionsSpec

OTHER = "other"


@dataclass(frozen=True)
class Unit:
    user_id: str
    unit: str
    events: list[str]
    times: list[int]


def units(table: pa.Table) -> Iterator[Unit]:
    """Consecutive rows of one (user, unit) as one ``Unit`` for the paths (the SQL orders by user, unit,
    time, id)."""
    if table.num_rows == 0:
        return
    ms = pc.cast(pc.cast(table["ts"], pa.timestamp("ms", tz="UTC")), pa.int64()).to_pylist()
    cols = {name: table[name].to_pylist() for name in ("user_id", "unit", "event")}
    begin = 0
    n = table.num_rows
    for i in range(1, n + 1):
        if i == n or cols["user_id"][i] != cols["user_id"][begin] or cols["unit"][i] != cols["unit"][begin]:
            yield Unit(cols["user_id"][begin], cols["unit"][begin], cols["event"][begin:i], ms[begin:i])
            begin = i


# -------------------------------------------------------------------------------------------- funnels


@dataclass(frozen=True)
class Conversion:
    user_id: str
    level: int  # steps reached by the best attempt
    gaps_ms: list[int]  # time from step k-1 to step k, k = 2..level
    value: str  # the breakdown dimension's value on the attempt's first event ('' without breakdown)


@dataclass(frozen=True)
class Sequence:
    """One unit's events for the funnel walk: times, which steps each event matches, which exclusions."""

    user_id: str
    times: list[int]
    hits: list[tuple[bool, ...]]  # per event, per step
    excluded: list[tuple[bool, ...]]  # per event, per exclusion
    values: list[str]  # the breakdown dimension per event ('' without breakdown)


def matches(table: pa.Table, event: str, filters: tuple) -> list[bool]:
    """Which rows match an event name and its dimension filters (computed column-wise by Arrow)."""
    mask = pc.equal(table["event"], event)
    for f in filters:
        inside = pc.is_in(table[f.field], value_set=pa.array(list(f.values), pa.string()))
        mask = pc.and_(mask, inside if f.op in ("=", "in") else pc.invert(inside))
    return mask.to_pylist()


def sequences(spec: FunnelSpec, table: pa.Table) -> Iterator[Sequence]:
    """Consecutive rows of one (user, unit) as one ``Sequence`` (the SQL orders by user, unit, time, id)."""
    n = table.num_rows
    if n == 0:
        return
    ms = pc.cast(pc.cast(table["ts"], pa.timestamp("ms", tz="UTC")), pa.int64()).to_pylist()
    hits = list(zip(*(matches(table, s.event, s.filters) for s in spec.steps), strict=True))
    excluded = (list(zip(*(matches(table, x.step.event, x.step.filters) for x in spec.exclusions), strict=True))
                if spec.exclusions else [()] * n)
    values = table[spec.breakdown].to_pylist() if spec.breakdown else [""] * n
    users, unit_keys = table["user_id"].to_pylist(), table["unit"].to_pylist()
    begin = 0
    for i in range(1, n + 1):
        if i == n or users[i] != users[begin] or unit_keys[i] != unit_keys[begin]:
            yield Sequence(users[begin], ms[begin:i], hits[begin:i], excluded[begin:i], values[begin:i])
            begin = i


def _walk(spec: FunnelSpec, seq: Sequence, a: int, limit: int) -> list[int]:
    """Events (indexes) reaching the steps in the attempt that starts at event ``a``."""
    n_steps = len(spec.steps)
    times, hits = seq.times, seq.hits
    if spec.mode == "any":
        taken: dict[int, int] = {}
        for i in range(a, len(times)):
            if times[i] > limit or len(taken) == n_steps:
                break
            step = next((k for k in range(n_steps) if k not in taken and hits[i][k]), None)
            if step is not None:
                taken[step] = i
        return sorted(taken.values())
    path = [a]
    strict = spec.mode == "strict"
    for i in range(a + 1, len(times)):
        if len(path) == n_steps or times[i] > limit:
            break
        if hits[i][len(path)]:
            path.append(i)
        elif strict:
            break
    return path


def _saw_the_rest(seq: Sequence, limit: int) -> bool:
    """The attempt's window reaches past the unit's last event: it could look at every later event."""
    return seq.times[-1] <= limit


def _spoiled(spec: FunnelSpec, seq: Sequence, path: list[int], limit: int) -> bool:
    """Did an exclusion event happen between the attempt's steps it names (or, step j never reached,
    before the attempt's window ended)?"""
    for x_index, x in enumerate(spec.exclusions):
        if len(path) < x.from_step:
            continue
        stop = path[x.to_step - 1] if len(path) >= x.to_step else None
        for i in range(path[x.from_step - 1] + 1, len(seq.times)):
            if (stop is not None and i >= stop) or (stop is None and seq.times[i] > limit):
                break
            if seq.excluded[i][x_index]:
                return True
    return False


def convert(spec: FunnelSpec, seq: Sequence) -> Conversion | None:
    """The unit's best attempt (furthest step; the earliest among equals), or None if it never entered."""
    start_ms, end_ms = int(spec.start.timestamp() * 1000), int(spec.end.timestamp() * 1000)
    window_ms = int(spec.window.total_seconds() * 1000)
    best: list[int] | None = None
    for a, t in enumerate(seq.times):
        if not start_ms <= t < end_ms or not (any(seq.hits[a]) if spec.mode == "any" else seq.hits[a][0]):
            continue
        path = _walk(spec, seq, a, t + window_ms)
        if spec.exclusions and _spoiled(spec, seq, path, t + window_ms):
            continue
        if best is None or len(path) > len(best):
            best = path
            if len(best) == len(spec.steps):
                break
        if spec.mode == "ordered" and best is path and _saw_the_rest(seq, t + window_ms):
            # Greedy matching over every later event is the furthest any later attempt (which sees only a
            # part of those events) can get, and a tie keeps the earlier attempt: stop here.
            break
    if best is None:
        return None
    gaps = [seq.times[j] - seq.times[i] for i, j in zip(best, best[1:], strict=False)]
    return Conversion(seq.user_id, len(best), gaps, seq.values[best[0]])


def step_rows(spec: FunnelSpec, conversions: list[Conversion]) -> list[dict[str, Any]]:
    """Count at each step (units reaching at least it, so never rising), conversion, drop-off and time."""
    counts, stats = [], []
    for k in range(1, len(spec.steps) + 1):
        reached = [c for c in conversions if c.level >= k]
        counts.append(len(reached))
        times = [c.gaps_ms[k - 2] / 1000 for c in reached] if k > 1 else []
        stats.append((statistics.fmean(times), statistics.median(times)) if times else (None, None))
    return shape_steps(spec, counts, stats)


def shape_steps(spec: FunnelSpec, counts: list[int], stats: list[tuple[float | None, float | None]]
                ) -> list[dict[str, Any]]:
    """The step rows from each step's count and (mean, median) time to convert in seconds, however counted."""
    rows: list[dict[str, Any]] = []
    first = counts[0] if counts else 0
    for k, (step, count, (mean, median)) in enumerate(zip(spec.steps, counts, stats, strict=True), start=1):
        previous = rows[-1]["count"] if rows else count
        rows.append({
            "step": k, "event": step.event, "count": count,
            "conversion_from_previous": count / previous if previous else None,
            "conversion_from_first": count / first if first else None,
            "drop_off": previous - count,
            "drop_off_rate": (previous - count) / previous if previous else None,
            "time_to_convert_mean": mean,
            "time_to_convert_median": median,
        })
    return rows


def breakdown_rows(spec: FunnelSpec, conversions: list[Conversion]) -> list[dict[str, Any]]:
    """Top ``breakdown_limit`` values by units entering (ties by value), the rest as "other"."""
    entering = Counter(c.value for c in conversions)
    ranked = sorted(entering, key=lambda v: (-entering[v], v))
    top = ranked[: spec.breakdown_limit]
    groups: dict[str, list[Conversion]] = {v: [] for v in top}
    for c in conversions:
        groups.setdefault(c.value if c.value in groups else OTHER, []).append(c)
    if len(ranked) > len(top):
        groups.setdefault(OTHER, [])
    return [{"value": v, "other": v == OTHER and len(ranked) > len(top), "steps": step_rows(spec, cs)}
            for v, cs in groups.items()]


def funnel_answer(spec: FunnelSpec, table: pa.Table) -> tuple[dict[str, Any], list[Conversion]]:
    conversions = [c for c in (convert(spec, seq) for seq in sequences(spec, table)) if c is not None]
    return funnel_body(spec, conversions), conversions


def funnel_body(spec: FunnelSpec, conversions: list[Conversion]) -> dict[str, Any]:
    """The answer's steps (and breakdown) from each unit's best attempt, however it was walked."""
    answer: dict[str, Any] = {"steps": step_rows(spec, conversions)}
    if spec.breakdown:
        answer["breakdown"] = breakdown_rows(spec, conversions)
    return answer


# ---------------------------------------------------------------------------------------------- paths


def paths_answer(spec: PathsSpec, table: pa.Table) -> dict[str, Any]:
    start_ms, end_ms = int(spec.start.timestamp() * 1000), int(spec.end.timestamp() * 1000)
    edges: Counter = Counter()
    forward = spec.start_event is not None
    anchor = spec.start_event if forward else spec.end_event
    for u in units(table):
        spots = [i for i, ev in enumerate(u.events) if ev == anchor]
        if not spots:
            continue
        at = spots[0] if forward else spots[-1]
        if not start_ms <= u.times[at] < end_ms:
            continue
        walk = u.events[at: at + spec.steps + 1] if forward else u.events[max(0, at - spec.steps): at + 1][::-1]
        for i, (a, b) in enumerate(zip(walk, walk[1:], strict=False), start=1):
            edges[(i, a, b)] += 1
    kept = sorted(edges.items(), key=lambda kv: (-kv[1], kv[0]))[: spec.edge_limit]
    nodes: Counter = Counter()
    for (i, a, b), w in kept:
        nodes[(i, b)] += w
        if i == 1:
            nodes[(0, a)] += w
    return {
        "direction": "after" if forward else "before", "anchor": anchor,
        "nodes": [{"id": f"{i}:{ev}", "step": i, "event": ev, "sessions": w} for (i, ev), w in sorted(nodes.items())],
        "edges": [{"source": f"{i - 1}:{a}", "target": f"{i}:{b}", "step": i, "from": a, "to": b, "sessions": w}
                  for (i, a, b), w in kept],
    }


# ------------------------------------------------------------------------------------------ retention


def retention_answer(spec: RetentionSpec, table: pa.Table) -> dict[str, Any]:
    grid: dict[tuple, list[int]] = {}
    for row in table.to_pylist():
        cohort = row["cohort"]
        key = (cohort.date().isoformat() if hasattr(cohort, "date") else str(cohort),
               row["value"] if spec.breakdown else None)
        cells = grid.setdefault(key, [0] * (spec.periods + 1))
        cells[row["n"]] += row["users"]
    if spec.mode == "on_or_after":  # users counted at their last return period: add up from the right
        for cells in grid.values():
            for n in range(spec.periods - 1, 0, -1):
                cells[n] += cells[n + 1]
    cohorts = []
    for (cohort, value), cells in sorted(grid.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        entry: dict[str, Any] = {"cohort": cohort, "size": cells[0], "counts": cells,
                                 "percentages": [100 * c / cells[0] if cells[0] else None for c in cells]}
        if spec.breakdown:
            entry["value"] = value
        cohorts.append(entry)
    return {"cohorts": cohorts}


# ------------------------------------------------------------------------------------------- sessions


def session_row(row: dict[str, Any]) -> dict[str, Any]:
    n = row["sessions"]
    return {
        "sessions": n,
        "avg_session_duration": row["total_duration_ms"] / 1000 / n if n else None,
        "pages_per_session": row["total_views"] / n if n else None,
        "bounce_rate": row["bounced"] / row["with_views"] if row["with_views"] else None,
        "bounced_sessions": row["bounced"], "sessions_with_page_views": row["with_views"],
    }


def sessions_answer(spec: SessionsSpec, table: pa.Table) -> dict[str, Any]:
    rows = table.to_pylist()
    measures = ("sessions", "total_duration_ms", "total_views", "with_views", "bounced")
    total = {k: sum(r[k] for r in rows) for k in measures}
    answer: dict[str, Any] = {"totals": session_row(total)}
    if spec.by:
        answer["rows"] = [{spec.by: r["grp"], **session_row(r)} for r in rows]
    return answer
