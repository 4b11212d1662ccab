"""Product-analytics definitions written out in plain Python, straight from docs/product-analytics.md.

This is the truth the engines are compared with: no SQL, no code shared with ``serving.analytics``,
written for clarity (brute force where that is clearer). Events are dicts with ``tenant``, ``event``,
``timestamp`` (aware UTC datetime, millisecond precision), ``event_id``, ``user_id``, ``page``,
``country``, ``device`` and ``properties`` (a JSON text that may hold ``session_id``).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

DAY = timedelta(hours=24)


def order_key(e: dict[str, Any]) -> tuple:
    return (e["timestamp"], e["event_id"])


def client_session(e: dict[str, Any]) -> str:
    try:
        value = json.loads(e.get("properties") or "{}").get("session_id")
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""


# ------------------------------------------------------------------------------------------ sessions


def sessions_of(events: list[dict[str, Any]], gap: timedelta = timedelta(minutes=30)) -> list[list[dict[str, Any]]]:
    """Every session as its events in (timestamp, event_id) order."""
    by_key: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_key[(e["tenant"], e["user_id"], client_session(e))].append(e)
    sessions: list[list[dict[str, Any]]] = []
    for (_tenant, _user, sid), group in by_key.items():
        group.sort(key=order_key)
        if sid:  # a client-sent session id is the session, whatever its length
            sessions.append(group)
            continue
        chains: list[list[dict[str, Any]]] = []
        for e in group:
            if chains and e["timestamp"] - chains[-1][-1]["timestamp"] <= gap:
                chains[-1].append(e)
            else:
                chains.append([e])
        for chain in chains:  # 24-hour slices counted from the chain's first event
            slices: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for e in chain:
                slices[(e["timestamp"] - chain[0]["timestamp"]) // DAY].append(e)
            sessions.extend(slices[k] for k in sorted(slices))
    return sessions


def session_metrics(events: list[dict[str, Any]], start: datetime, end: datetime, *,
                    non_interactive: frozenset[str] = frozenset(), by: str | None = None,
                    gap: timedelta = timedelta(minutes=30)) -> dict[Any, dict[str, Any]]:
    """{group: metrics} for the sessions whose first event lies in [start, end); group None = all."""
    groups: dict[Any, list[list[dict[str, Any]]]] = defaultdict(list)
    for s in sessions_of(events, gap):
        if not start <= s[0]["timestamp"] < end:
            continue
        views = [e for e in s if e["event"] == "page_view"]
        key = None
        if by == "entry_page":
            key = views[0]["page"] if views else ""
        elif by == "exit_page":
            key = views[-1]["page"] if views else ""
        groups[key].append(s)
    out = {}
    for key, ss in groups.items():
        durations = [(s[-1]["timestamp"] - s[0]["timestamp"]) / timedelta(milliseconds=1) for s in ss]
        with_views = bounced = views_total = 0
        for s in ss:
            views = sum(1 for e in s if e["event"] == "page_view")
            interactive = sum(1 for e in s if e["event"] != "page_view" and e["event"] not in non_interactive)
            views_total += views
            if views:
                with_views += 1
                if views < 2 and interactive == 0:
                    bounced += 1
        out[key] = {
            "sessions": len(ss),
            "avg_session_duration": sum(durations) / 1000 / len(ss),
            "pages_per_session": views_total / len(ss),
            "bounce_rate": bounced / with_views if with_views else None,
        }
    return out


# ------------------------------------------------------------------------------------------- funnels


def matches(e: dict[str, Any], step: dict[str, Any]) -> bool:
    if e["event"] != step["event"]:
        return False
    for f in step.get("filters", []):
        value = e[f["field"]]
        wanted = f["values"] if "values" in f else [f["value"]]
        inside = value in wanted
        if f.get("op", "=") in ("=", "in") and not inside:
            return False
        if f.get("op", "=") in ("!=", "not in") and inside:
            return False
    return True


def _attempt(seq: list[dict[str, Any]], a: int, steps: list[dict[str, Any]], window: timedelta,
             mode: str) -> list[int]:
    """Indexes into ``seq`` of the events that reached each step in the attempt starting at ``a``."""
    limit = seq[a]["timestamp"] + window
    if mode == "any":
        done: dict[int, int] = {}
        for i in range(a, len(seq)):
            if seq[i]["timestamp"] > limit:
                break
            for k, step in enumerate(steps):
                if k not in done and matches(seq[i], step):
                    done[k] = i
                    break
        return sorted(done.values())
    reached = [a]
    for i in range(a + 1, len(seq)):
        if len(reached) == len(steps) or seq[i]["timestamp"] > limit:
            break
        if matches(seq[i], steps[len(reached)]):
            reached.append(i)
        elif mode == "strict":
            break
    return reached


def _excluded(seq: list[dict[str, Any]], reached: list[int], a: int, window: timedelta,
              exclusions: list[dict[str, Any]]) -> bool:
    for x in exclusions:
        i, j = x["from_step"], x["to_step"]
        if len(reached) < i:
            continue
        lo = reached[i - 1]
        hi = reached[j - 1] if len(reached) >= j else None
        for n in range(lo + 1, len(seq)):
            if hi is not None and n >= hi:
                break
            if hi is None and seq[n]["timestamp"] > seq[a]["timestamp"] + window:
                break
            if matches(seq[n], x):
                return True
    return False


def funnel_units(events: list[dict[str, Any]], steps: list[dict[str, Any]], start: datetime, end: datetime, *,
                 window: timedelta = timedelta(days=14), mode: str = "ordered", unit: str = "users",
                 exclusions: list[dict[str, Any]] = (), gap: timedelta = timedelta(minutes=30)
                 ) -> dict[Any, tuple[list[dict[str, Any]], dict[str, Any]]]:
    """{unit: (events of its best attempt per step reached, entry event)} for every unit that entered."""
    if unit == "users":
        by_unit: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for e in events:
            by_unit[(e["tenant"], e["user_id"])].append(e)
    else:
        by_unit = {(s[0]["tenant"], s[0]["user_id"], s[0]["event_id"]): s for s in sessions_of(events, gap)}
    out = {}
    for key, seq in by_unit.items():
        seq = sorted(seq, key=order_key)
        best: list[int] | None = None
        for a, e in enumerate(seq):
            if not start <= e["timestamp"] < end:
                continue
            starts = matches(e, steps[0]) if mode != "any" else any(matches(e, s) for s in steps)
            if not starts:
                continue
            reached = _attempt(seq, a, steps, window, mode)
            if _excluded(seq, reached, a, window, list(exclusions)):
                continue
            if best is None or len(reached) > len(best):
                best = reached
        if best is not None:
            out[key] = ([seq[i] for i in best], seq[best[0]])
    return out


def funnel(events: list[dict[str, Any]], steps: list[dict[str, Any]], start: datetime, end: datetime, *,
           breakdown: str | None = None, breakdown_limit: int = 10, **options: Any) -> dict[str, Any]:
    units = funnel_units(events, steps, start, end, **options)

    def table(chosen: dict[Any, tuple]) -> list[dict[str, Any]]:
        rows = []
        for k in range(1, len(steps) + 1):
            reached = [path for path, _ in chosen.values() if len(path) >= k]
            times = [(p[k - 1]["timestamp"] - p[k - 2]["timestamp"]) / timedelta(milliseconds=1) / 1000
                     for p in reached] if k > 1 else []
            rows.append({"step": k, "count": len(reached),
                         "time_to_convert_mean": statistics.fmean(times) if times else None,
                         "time_to_convert_median": statistics.median(times) if times else None})
        return rows

    answer: dict[str, Any] = {"steps": table(units)}
    if breakdown:
        values = Counter(entry[breakdown] for _, entry in units.values())
        ranked = sorted(values, key=lambda v: (-values[v], v))
        top = set(ranked[:breakdown_limit])
        groups: dict[str, dict] = defaultdict(dict)
        for key, (path, entry) in units.items():
            groups[entry[breakdown] if entry[breakdown] in top else "other"][key] = (path, entry)
        answer["breakdown"] = {value: table(chosen) for value, chosen in groups.items()}
    answer["dropped"] = {k: sorted({key[1] for key, (path, _) in units.items() if len(path) == k})
                         for k in range(1, len(steps))}
    return answer


# ----------------------------------------------------------------------------------------- retention


def period_start(t: datetime, period: str) -> datetime:
    day = t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


def period_index(cohort: datetime, t: datetime, period: str) -> int:
    p = period_start(t, period)
    if period == "month":
        return (p.year - cohort.year) * 12 + p.month - cohort.month
    return (p - cohort).days // (7 if period == "week" else 1)


def retention(events: list[dict[str, Any]], start: datetime, end: datetime, *, start_event: str,
              return_event: str, period: str = "week", periods: int = 4, mode: str = "on",
              breakdown: str | None = None) -> dict[tuple, list[int]]:
    """{(cohort start, breakdown value or None): [users in period 0, 1, …, periods]}."""
    first: dict[tuple, dict[str, Any]] = {}
    for e in sorted(events, key=order_key):
        if e["event"] == start_event:
            first.setdefault((e["tenant"], e["user_id"]), e)
    grid: dict[tuple, list[set]] = {}
    for user, f in first.items():
        if not start <= f["timestamp"] < end:
            continue
        cohort = period_start(f["timestamp"], period)
        row = grid.setdefault((cohort, f[breakdown] if breakdown else None), [set() for _ in range(periods + 1)])
        row[0].add(user)
    for e in events:
        user = (e["tenant"], e["user_id"])
        f = first.get(user)
        if e["event"] != return_event or f is None or not start <= f["timestamp"] < end:
            continue
        cohort = period_start(f["timestamp"], period)
        n = period_index(cohort, e["timestamp"], period)
        row = grid[(cohort, f[breakdown] if breakdown else None)]
        if mode == "on":
            if 1 <= n <= periods:
                row[n].add(user)
        else:
            for m in range(1, min(n, periods) + 1):
                row[m].add(user)
    return {key: [len(s) for s in row] for key, row in grid.items()}


# --------------------------------------------------------------------------------------------- paths


def paths(events: list[dict[str, Any]], start: datetime, end: datetime, *, start_event: str | None = None,
          end_event: str | None = None, steps: int = 5, edge_limit: int = 50,
          gap: timedelta = timedelta(minutes=30)) -> dict[tuple, int]:
    """{(step, from event, to event): sessions}, the ``edge_limit`` heaviest edges."""
    weights: Counter = Counter()
    for s in sessions_of(events, gap):
        names = [e["event"] for e in s]
        if start_event is not None:
            anchors = [i for i, e in enumerate(s) if e["event"] == start_event]
            if not anchors or not start <= s[anchors[0]]["timestamp"] < end:
                continue
            walk = names[anchors[0]: anchors[0] + steps + 1]
        else:
            anchors = [i for i, e in enumerate(s) if e["event"] == end_event]
            if not anchors or not start <= s[anchors[-1]]["timestamp"] < end:
                continue
            walk = list(reversed(names[max(0, anchors[-1] - steps): anchors[-1] + 1]))
        for i in range(len(walk) - 1):
            weights[(i + 1, walk[i], walk[i + 1])] += 1
    ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:edge_limit]
    return dict(ranked)
