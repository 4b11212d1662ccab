"""The funnel's step walk written as SQL for ClickHouse and DuckDB, where SQL can follow the rules exactly.

Walking every unit's events in Python costs about 2 µs per event, 20 times the hot tier's bare scan; the
same walk over arrays inside the engine costs a fraction of that. It covers the ``ordered`` and ``strict``
modes without exclusions and with filters and a breakdown on the events' own dimensions: there, an
attempt's path is "the first event after the previous step's that matches the next step, within the
window" (strict: the very next event), which list functions compute per attempt. ``any`` order,
exclusions and profile properties keep the Python walk of ``serving.analytics.sequences``, the reference
both share. ClickHouse's ``windowFunnel`` is not used: it cannot break ties on time by event id, and it
gives only the level reached, not the times between the steps of the attempt that reached it.

The hot tier walks packed events first (``packed_parts``): each event one UInt64 of its time and its step
mask, sorted as plain numbers, without the event ids. That order is the (timestamp, event_id) order
whenever no two events of a unit share a millisecond with different masks (or, with a breakdown, share a
millisecond at all); the units where they do are flagged ``tied`` and walked again by ``funnel_walk``, which
sorts by event id. By user, the packed events of the closed hours come from the funnel pieces the batch layer built
(``funnel_packed_pieces``; ``common.session_pieces``), the rest from the raw events (``funnel_packed_events``).
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
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


MASK_BITS = 16  # the step mask's width in a packed event: up to 16 steps (a funnel has at most 10)
# the packed sentinel's time (2^48 - 1 ms, after any event's) read as "no such step": later than any window's end
PACKED_NONE = "toInt64(281474976710655)"
# the sentinel itself, the last packed event of every unit: as a step's packed event, "no such step"
PACKED_SENTINEL = "toUInt64(18446744073709551615)"
# a packed event's time bits (its mask bits cleared)
PACKED_TIME_BITS = str((1 << 64) - (1 << MASK_BITS))


def packs(spec: FunnelSpec) -> bool:
    """Whether the hot tier's packed walk answers ``spec`` (units with ties excepted, see the module's note)."""
    return walks_in_sql(spec) and len(spec.steps) <= MASK_BITS


def packed_parts(spec: FunnelSpec, *, on_packed: bool = True) -> dict[str, str]:
    """The ``funnel_walk_packed`` placeholders. Per position, ``c2`` … ``cN``: where the steps 2 … N an attempt
    starting there would reach lie (the sentinel from the first step not found).

    Ordered mode: c_L is G_2(G_3(… G_L(v))), where G_k(v) gives every position the value v holds at the next
    event matching step k (``arrayReverseFill`` over the masks; the sentinel at the end matches every step, so
    positions after the last match get its value). The outer fill reads G_k(v) only where step k-1 matched, and
    there "the next" must mean "strictly after"; when steps k-1 and k have different event names no event
    matches both, so "at or after" is the same and the shift is skipped. Strict mode: step k is the event k-1
    places later, with every event in between matching its step (arrays shifted left, linear in the events).
    A packed event's low bits are its mask: the packed numbers ``s`` serve as the masks (``bitTest``).

    ``on_packed`` (the default): v is ``s`` itself, so the chains hold packed events and every comparison is
    made on them (a step within the window: ``c < (time + window + 1) << 16``; the times are shifted out only
    for the best attempt's gaps); no array of times is built, and the ties are found with one shifted copy of
    ``s`` instead of two arrays of differences. False: the chains over an array of times ``t`` cut out of
    ``s`` (the walk before; the benchmark's comparison)."""
    n = len(spec.steps)
    names = [f"c{k}" for k in range(2, n + 1)]
    v, none = ("s", PACKED_SENTINEL) if on_packed else ("t", PACKED_NONE)
    parts = []
    if spec.mode == "strict":
        parts += [f"arrayShiftLeft(s, {j - 1}) AS ms{j}" for j in range(2, n + 1)]
        for k in range(2, n + 1):
            matched = " AND ".join(f"bitTest(a{j}, {j - 1})" for j in range(2, k + 1))
            args = ", ".join(f"a{j}" for j in range(2, k + 1))
            arrays = ", ".join(f"ms{j}" for j in range(2, k + 1))
            if on_packed:  # beyond the end the shifted copies hold 0, which matches no step
                parts.append(f"arrayMap(({args}) -> if({matched}, a{k}, {none}), {arrays}) AS c{k}")
            else:
                parts.append(f"arrayMap(({args}, y) -> if({matched}, y, {none}), {arrays}, "
                             f"arrayShiftLeft(t, {k - 1}, {none})) AS c{k}")
    else:
        for last in range(2, n + 1):
            chain = v
            for k in range(last, 1, -1):
                chain = f"arrayReverseFill((x, y) -> bitTest(y, {k - 1}), {chain}, s)"
                if spec.steps[k - 2].event == spec.steps[k - 1].event:  # one event may match both steps
                    chain = f"arrayShiftLeft({chain}, 1, {none})"
            parts.append(f"{chain} AS c{last}")
    in_range = "x >= {start_ms:Int64} AND x < {end_ms:Int64}"
    if on_packed:
        shifted = "bitShiftLeft(toUInt64({%s:Int64}), " + str(MASK_BITS) + ")"
        in_range = f"x >= {shifted % 'start_ms'} AND x < {shifted % 'end_ms'}"
        limit = f"bitAnd(x, {PACKED_TIME_BITS}) + bitShiftLeft(toUInt64({{window_ms:Int64}} + 1), {MASK_BITS})"
        level = f"toUInt8(1 + {' + '.join(f'({c} < {limit})' for c in names)})"
        chains = ", ".join(names)
        attempts = f"arrayMap((x, {chains}) -> if(bitTest(x, 0) AND {in_range}, {level}, 0), s, {chains})"

        def ms(e: str) -> str:
            return f"toInt64(bitShiftRight({e}, {MASK_BITS}))"
        gaps = ", ".join(f"{ms(f'{c}[b]')} - {ms('s[b]' if k == 2 else f'c{k - 1}[b]')}"
                         for k, c in enumerate(names, start=2))
        same_ms = f"bitShiftRight(a, {MASK_BITS}) = bitShiftRight(z, {MASK_BITS})"
    else:
        level = f"toUInt8(1 + {' + '.join(f'({c} <= x + {{window_ms:Int64}})' for c in names)})"
        attempts = (f"arrayMap((x, y, {', '.join(names)}) -> if(bitTest(y, 0) AND {in_range}, {level}, 0), t, s, "
                    f"{', '.join(names)})")
        gaps = ", ".join(f"{c}[b] - {'t' if k == 2 else f'c{k - 1}'}[b]" for k, c in enumerate(names, start=2))
    if spec.breakdown:  # the values' order must be the events' own: any two on one millisecond send the unit back
        tie = (f"arrayExists((a, z) -> {same_ms}, s, arrayShiftLeft(s, 1))" if on_packed
               else "arrayExists(d -> d = 0, arrayPopFront(arrayDifference(t)))")
        value_array, value_pick = "groupArray(value)", "v[b]"
        value_sort = "arrayPushBack(arraySort((v, k) -> k, v0, k0), '')"
    else:  # two events on one millisecond with the same mask walk the same whichever comes first
        tie = (f"arrayExists((a, z) -> {same_ms} AND a != z, s, arrayShiftLeft(s, 1))" if on_packed
               else "arrayExists((d, e) -> d = 0 AND e != 0, arrayDifference(t), arrayDifference(s))")
        value_array, value_sort, value_pick = "emptyArrayString()", "emptyArrayString()", "''"
    times = "" if on_packed else f", arrayMap(k -> toInt64(bitShiftRight(k, {MASK_BITS})), s) AS t"
    return {"chain": ", ".join(parts), "attempts": attempts, "times": times,
            "gaps": f"arraySlice([{gaps}], 1, level - 1)", "tie": tie, "value_array": value_array,
            "value_sort": value_sort, "value_pick": value_pick,
            # ordered mode: an event matching no step (its name does, a filter does not) is never walked
            "mask_keep": "mask != 0" if spec.mode == "ordered" else "1", "mask_bits": str(MASK_BITS)}


def _param(engine: str, name: str, ch_type: str) -> str:
    return f"{{{name}:{ch_type}}}" if engine == "hot" else f"${name}"


NONE = "toInt64(9223372036854775807)"  # the time of a step not reached: later than any window's end


def _clickhouse_parts(spec: FunnelSpec) -> dict[str, str]:
    """``chain``: per event position i, as if i were a step-1 event, the tuple of the times of steps 2 … N its
    attempt would reach (NONE from the first step not found); times never fall along it, so an attempt's level
    is 1 plus the number of those times within its window. Computed for every position at once with
    whole-array functions, without a loop over attempts."""
    n = len(spec.steps)
    later = range(2, n + 1)
    if spec.mode == "strict":  # step k must be the event k - 1 places after the step-1 event
        times = []
        for k in later:
            matched = " AND ".join(f"bitTest(m[i + {j - 1}], {j - 1})" for j in range(2, k + 1))
            times.append(f"if({matched}, t[i + {k - 1}], {NONE})")  # beyond the end m[…] is 0: not matched
        chain = f"arrayMap((x, i) -> tuple({', '.join(times)}), t, ix) AS c1"
    else:
        # ordered: step k is the first event after step k-1's matching step k. c{k-1}[i]: the times of steps
        # k … N along the walk that continues after position i as if i were step k-1 — the tuple of the first
        # later event matching step k (its time, then c{k}'s tuple at that event), found for all positions
        # by one arrayReverseFill over the events matching step k
        parts = [f"arrayMap(x -> bitTest(x, {k - 1}), m) AS q{k}" for k in later]
        for k in range(n, 1, -1):
            width = n - k + 1
            none = f"tuple({', '.join([NONE] * width)})"
            own = ("arrayMap(x -> tuple(x), t)" if k == n else
                   f"arrayMap((x, y) -> tuple(x, {', '.join(f'y.{w}' for w in range(1, width))}), t, c{k})")
            parts.append(f"arrayPushBack(arrayPopFront(arrayReverseFill((x, q) -> q, arrayMap((x, q) -> if(q, x, "
                         f"{none}), {own}, q{k}), q{k})), {none}) AS c{k - 1}")
        chain = ", ".join(parts)
    level = f"toUInt8(1 + {' + '.join(f'(c.{k - 1} <= x + {{window_ms:Int64}})' for k in later)})"
    gaps = (f"arraySlice([c1[b].1 - t[b], {', '.join(f'c1[b].{k - 1} - c1[b].{k - 2}' for k in range(3, n + 1))}], "
            f"1, level - 1)" if n > 2 else "arraySlice([c1[b].1 - t[b]], 1, level - 1)")
    # the breakdown values travel only when asked for; the best attempt's is looked up through the order o
    value_array, value_pick = ("groupArray(value)", "v0[o[b]]") if spec.breakdown else ("emptyArrayString()", "''")
    return {"chain": chain, "level": level, "gaps": gaps, "value_array": value_array, "value_pick": value_pick}


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
    """Step k's times are the (k-1)-th gap of the units reaching it, gathered straight from the lists' flat values
    by their offsets. The mean does not depend on the order (``fmean`` is an exactly rounded sum), so only the
    median's one or two middle values are put in place (``np.partition``), not the whole list sorted."""
    levels = level.to_numpy(zero_copy_only=False)
    firsts = gaps.offsets.to_numpy(zero_copy_only=False)[:-1]  # each unit's first gap in the flat values
    flat = gaps.values.to_numpy(zero_copy_only=False)
    counts, stats = [], []
    for k in range(1, len(spec.steps) + 1):
        reached = levels >= k
        counts.append(int(np.count_nonzero(reached)))
        if k == 1 or not counts[-1]:
            stats.append((None, None))
            continue
        seconds = flat[firsts[reached] + (k - 2)].astype(np.float64) / 1000.0
        n = len(seconds)
        middle = np.partition(seconds, [(n - 1) // 2, n // 2])
        median = float(middle[n // 2]) if n % 2 else (float(middle[n // 2 - 1]) + float(middle[n // 2])) / 2
        stats.append((statistics.fmean(seconds.tolist()), median))
    return shape_steps(spec, counts, stats)


def conversions(table: pa.Table) -> list[Conversion]:
    """One ``Conversion`` per unit row of ``funnel_walk``."""
    return [Conversion(u, lv, g, v) for u, lv, g, v in zip(
        table["user_id"].to_pylist(), table["level"].to_pylist(), table["gaps"].to_pylist(),
        table["value"].to_pylist(), strict=True)]
