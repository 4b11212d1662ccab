"""The funnel's step walk written as SQL for ClickHouse and DuckDB, where SQL can follow the rules exactly.

Walking every unit's events in Python costs about 2 µs per event, 20 times the hot tier's bare scan; the
same walk over arrays inside the engine costs a fraction of that. It covers the ``ordered`` and ``strict``
modes without exclusions and with filters and a breakdown on the events' own dimensions: there, an
attempt's path is "the first event after the previous step's that matches the next step, within the
window" (strict: the very next event), which list functions compute per attempt. ``any`` order,
exclusions and profile properties keep the Python walk of ``serving.analytics.sequences``, the reference
both share. ClickHouse's ``windowFunnel`` is not used: it cannot break ties on time by event id.
"""

from __future__ import annotations

import statistics
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from serving.analytics.definitions import FunnelSpec
from serving.analytics.sequences import OTHER, Conversion, shape_steps


def walks_in_sql(spec: FunnelSpec) -> bool:
    """Whether ``funnel_walk`` answers this funnel exactly as the Python walk would."""
    return spec.mode in ("ordered", "strict") and not spec.exclusions and not spec.profile_fields


def mask_sql(spec: FunnelSpec, engine: str) -> tuple[str, dict[str, Any]]:
    """An integer per event with bit k set when the event matches step k+1 (names and filters as parameters)."""
    terms, params = [], {}
    for k, step in enumerate(spec.steps):
        params[f"step_{k}"] = step.event
        cond = [f"event = {_param(engine, f'step_{k}', 'String')}"]
        for j, f in enumerate(step.filters):
            params[f"step_{k}_{j}"] = list(f.values)
            values = _param(engine, f"step_{k}_{j}", "Array(String)")
            # f.field: a whitelisted dimension
            inside = (f"{f.field} IN {values}" if engine == "hot" else f"list_contains({values}, {f.field})")
            cond.append(inside if f.op in ("=", "in") else f"NOT ({inside})")
        matched = " AND ".join(cond)
        terms.append(f"toUInt16({matched}) * {1 << k}" if engine == "hot"
                     else f"CASE WHEN {matched} THEN {1 << k} ELSE 0 END")
    return " + ".join(terms), params


def walk_parts(spec: FunnelSpec, engine: str) -> dict[str, str]:
    """The ``funnel_walk`` placeholders for ``spec``'s steps, mode and engine (see the sections' comments)."""
    return _clickhouse_parts(spec) if engine == "hot" else _duckdb_parts(spec)


def _param(engine: str, name: str, ch_type: str) -> str:
    return f"{{{name}:{ch_type}}}" if engine == "hot" else f"${name}"


def _clickhouse_parts(spec: FunnelSpec) -> dict[str, str]:
    later = range(2, len(spec.steps) + 1)
    if spec.mode == "strict":  # the very next event must match the next step
        nexts = "1 AS strict"
        steps = [f"arrayMap((p, l) -> if(p > 0 AND p < length(t) AND bitTest(m[p + 1], {k - 1}) AND t[p + 1] <= l, "
                 f"p + 1, 0), a{k - 1}, lim) AS a{k}" for k in later]
    else:
        nexts = ", ".join(f"arrayReverseFill(x -> x > 0, arrayMap((x, i) -> if(bitTest(x, {k - 1}), i, 0), m, ix))"
                          f" AS n{k}" for k in later)
        steps = [f"arrayMap((p, l) -> if(p > 0 AND p < length(t) AND n{k}[p + 1] > 0 AND t[n{k}[p + 1]] <= l, "
                 f"n{k}[p + 1], 0), a{k - 1}, lim) AS a{k}" for k in later]
    reached = ", ".join(f"p{k}" for k in later)
    levels = (f"arrayMap(({reached}) -> toUInt8(1 + {' + '.join(f'(p{k} > 0)' for k in later)}), "
              f"{', '.join(f'a{k}' for k in later)})")
    gaps = f"arraySlice([{', '.join(f't[a{k}[b]] - t[a{k - 1}[b]]' for k in later)}], 1, level - 1)"
    # the breakdown values travel only when asked for; the best attempt's is looked up through the order o
    value_array, value_pick = ("groupArray(value)", "v0[o[a1[b]]]") if spec.breakdown else ("emptyArrayString()", "''")
    return {"nexts": nexts, "steps": ", ".join(steps), "levels": levels, "gaps": gaps,
            "value_array": value_array, "value_pick": value_pick}


def _duckdb_parts(spec: FunnelSpec) -> dict[str, str]:
    later = list(range(2, len(spec.steps) + 1))
    # step k joins only the events matching step k (a step reached is one of them in either mode): the hash
    # tables hold those instead of every step event
    matching = {k: f"(SELECT * FROM steps WHERE (mask & {1 << (k - 1)}) != 0)" for k in later}
    if spec.mode == "strict":
        nexts = "0 AS strict"
        joins = [f"LEFT JOIN {matching[k]} AS s{k} ON s{k}.user_id = s1.user_id AND s{k}.unit = s1.unit "
                 f"AND s{k}.rn = s{k - 1}.rn + 1 AND s{k}.t <= s1.t + $window_ms" for k in later]
    else:
        nexts = ", ".join(f"min(CASE WHEN (mask & {1 << (k - 1)}) != 0 THEN rn END) OVER (PARTITION BY user_id, "
                          f"unit ORDER BY rn ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS x{k}" for k in later)
        joins = [f"LEFT JOIN {matching[k]} AS s{k} ON s{k}.user_id = s1.user_id AND s{k}.unit = s1.unit "
                 f"AND s{k}.rn = s{k - 1}.x{k} AND s{k}.t <= s1.t + $window_ms" for k in later]
    level = "1 + " + " + ".join(f"CAST(s{k}.rn IS NOT NULL AS INTEGER)" for k in later)
    gaps = (f"list_filter([{', '.join(f's{k}.t - s{k - 1}.t' for k in later)}], lambda g: g IS NOT NULL)")
    return {"nexts": nexts, "joins": " ".join(joins), "level": level, "gaps": gaps}


def walked_body(spec: FunnelSpec, table: pa.Table) -> dict[str, Any]:
    """``funnel_body(spec, conversions(table))`` computed on ``funnel_walk``'s columns: with hundreds of
    thousands of units, one Python object per unit costs more than the walk itself. Times in seconds are
    each gap in milliseconds divided by 1000 as in the Python walk; the mean is ``statistics.fmean`` of
    them (an exactly rounded sum) and the median the middle value, or the mean of the two middle ones."""
    level = pc.cast(table["level"], pa.int64()).combine_chunks()
    gaps = table["gaps"].combine_chunks()
    body: dict[str, Any] = {"steps": _step_rows(spec, level, gaps)}
    if spec.breakdown:
        values = pc.cast(table["value"], pa.string()).combine_chunks()
        counted = pc.value_counts(values).to_pylist()
        ranked = sorted(((c["values"], c["counts"]) for c in counted), key=lambda vc: (-vc[1], vc[0]))
        top = [v for v, _ in ranked[: spec.breakdown_limit]]
        groups = {v: pc.equal(values, v) for v in top}
        # as the Python walk groups: a top value "other" shares its group with the values outside the top
        outside = pc.or_(pc.invert(pc.is_in(values, value_set=pa.array(top, pa.string()))), pc.equal(values, OTHER))
        if len(ranked) > len(top) or OTHER in groups:
            groups[OTHER] = outside
        body["breakdown"] = [{"value": v, "other": v == OTHER and len(ranked) > len(top),
                              "steps": _step_rows(spec, level.filter(m), gaps.filter(m))}
                             for v, m in groups.items()]
    return body


def _step_rows(spec: FunnelSpec, level: pa.Array, gaps: pa.Array) -> list[dict[str, Any]]:
    counts, stats = [], []
    for k in range(1, len(spec.steps) + 1):
        reached = pc.greater_equal(level, k)
        counts.append(int(pc.sum(reached).as_py() or 0))
        if k == 1 or not counts[-1]:
            stats.append((None, None))
            continue
        ms = pc.list_element(gaps.filter(reached), k - 2)
        seconds = pc.divide(pc.cast(ms, pa.float64()), 1000.0)
        ordered = pc.take(seconds, pc.sort_indices(seconds)).to_pylist()
        n = len(ordered)
        median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
        stats.append((statistics.fmean(ordered), median))
    return shape_steps(spec, counts, stats)


def conversions(table: pa.Table) -> list[Conversion]:
    """One ``Conversion`` per unit row of ``funnel_walk``."""
    return [Conversion(u, lv, g, v) for u, lv, g, v in zip(
        table["user_id"].to_pylist(), table["level"].to_pylist(), table["gaps"].to_pylist(),
        table["value"].to_pylist(), strict=True)]
