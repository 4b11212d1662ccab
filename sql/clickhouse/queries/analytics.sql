-- Product analytics over the hot tier's raw events (serving/analytics/engine.py fills these in).
-- Brace placeholders are SQL the code writes from whitelists (a section of this file, a catalogue
-- dimension, a period function); every value a user typed is a typed parameter {name:Type}.
-- The order of events is (timestamp, event_id) everywhere: ties on time are broken by the event id.

-- name: scan
-- The tenant's events of [scan_start, scan_end) with the client's session id ('' when not a string;
-- events without properties skip the JSON parser).
SELECT user_id, timestamp AS ts, event_id, event, page, country, device,
       if(properties = '', '', JSONExtractString(properties, 'session_id')) AS sid
FROM events_raw
WHERE tenant = {tenant:String}
  AND timestamp >= {scan_start:DateTime64(3, 'UTC')}
  AND timestamp < {scan_end:DateTime64(3, 'UTC')}

-- name: sessionized
-- Every event with its session: the client's id when sent; otherwise a chain of the user's events with
-- gaps of at most gap_ms, cut into 24-hour slices counted from the chain's first event.
SELECT user_id, ts, event_id, event, page, country, device,
       if(sid != '', concat('c:', sid),
          concat('s:', toString(chain), ':',
                 toString(intDiv(toUnixTimestamp64Milli(ts) - toUnixTimestamp64Milli(chain_start), 86400000)))) AS session
FROM (
    SELECT *, min(ts) OVER (PARTITION BY user_id, sid, chain) AS chain_start
    FROM (
        SELECT *, sum(new_chain) OVER (PARTITION BY user_id, sid ORDER BY ts, event_id
                                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS chain
        FROM (
            SELECT *,
                   if(row_number() OVER w = 1
                      OR toUnixTimestamp64Milli(ts) - toUnixTimestamp64Milli(lagInFrame(ts) OVER w) > {gap_ms:Int64},
                      1, 0) AS new_chain
            FROM ({scan})
            WINDOW w AS (PARTITION BY user_id, sid ORDER BY ts, event_id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
        )
    )
)

-- name: session_metrics
-- Sessions whose first event lies in [start, end), totals only. The same sessions as the sessionized
-- section, cut from each (user, client session id)'s events as arrays instead of three window functions
-- over every row: a session starts at the first event, and (without a client id) after a gap over gap_ms
-- or where the 24-hour slice of the chain changes; arraySplit cuts the arrays there, one row per session.
-- Only times and one flag per event travel (bit 0: a page view, bit 1: an interactive event), and the
-- arrays are sorted by time alone: events on the same millisecond always share a session (no gap between
-- them, the same slice), and nothing counted here depends on their order, so event ids are not needed.
SELECT '' AS grp, count() AS sessions, sum(duration_ms) AS total_duration_ms, sum(views) AS total_views,
       countIf(views > 0) AS with_views, countIf(views > 0 AND views < 2 AND interactive = 0) AS bounced
FROM (
    SELECT st[1] AS first_ms, st[-1] - st[1] AS duration_ms, toUInt64(arrayCount(x -> bitTest(x, 0), sf)) AS views,
           arrayCount(x -> bitTest(x, 1), sf) AS interactive
    FROM (
        SELECT arraySplit((x, c) -> c, t, cut) AS ts_parts, arraySplit((x, c) -> c, f, cut) AS flag_parts
        FROM ({session_cuts})
    )
    ARRAY JOIN ts_parts AS st, flag_parts AS sf
)
WHERE first_ms >= {start_ms:Int64} AND first_ms < {end_ms:Int64}
SETTINGS max_execution_time = {timeout_seconds}

-- name: session_metrics_by_page
-- session_metrics grouped by the entry or exit page (the group placeholder): the pages travel too, and
-- the arrays are put in (timestamp, event_id) order, since the first and last page view of a session
-- depend on the order of events on the same millisecond.
SELECT {group} AS grp, count() AS sessions, sum(duration_ms) AS total_duration_ms, sum(views) AS total_views,
       countIf(views > 0) AS with_views, countIf(views > 0 AND views < 2 AND interactive = 0) AS bounced
FROM (
    SELECT st[1] AS first_ms, st[-1] - st[1] AS duration_ms, toUInt64(arrayCount(x -> bitTest(x, 0), sf)) AS views,
           arrayCount(x -> bitTest(x, 1), sf) AS interactive, arrayFilter((p, x) -> bitTest(x, 0), sp, sf) AS view_pages,
           view_pages[1] AS entry_page, view_pages[-1] AS exit_page
    FROM (
        SELECT arraySplit((x, c) -> c, t, cut) AS ts_parts, arraySplit((x, c) -> c, f, cut) AS flag_parts,
               arraySplit((x, c) -> c, arrayMap(i -> p0[i], o), cut) AS page_parts
        FROM ({session_cuts})
    )
    ARRAY JOIN ts_parts AS st, flag_parts AS sf, page_parts AS sp
)
WHERE first_ms >= {start_ms:Int64} AND first_ms < {end_ms:Int64}
GROUP BY grp
ORDER BY sessions DESC, grp
SETTINGS max_execution_time = {timeout_seconds}

-- name: session_cuts
-- Per (user, client session id): the event times t (epoch ms, in the order o of the collected arrays,
-- which the order placeholder gives), the flags f and cut, 1 where a session starts. gap_cut marks a chain's
-- first event (the first event, or a gap over gap_ms), chain_start carries its time forward. keep: which events
-- (1, or some users' events without a client session id when session pieces leave them to the raw events).
SELECT sid, o, p0, t, f,
       arrayMap((d, i) -> toUInt8(i = 1 OR d > {gap_ms:Int64}), arrayDifference(t), arrayEnumerate(t)) AS gap_cut,
       arrayFill((x, c) -> c = 1, t, gap_cut) AS chain_start,
       arrayMap((x, s, c, i) -> toUInt8(i = 1 OR (sid = '' AND (c = 1 OR intDiv(x - s, 86400000)
                                                               != intDiv(t[i - 1] - s, 86400000)))),
                t, chain_start, gap_cut, arrayEnumerate(t)) AS cut
FROM (
    SELECT sid, o, p0, arrayMap(i -> t0[i], o) AS t, arrayMap(i -> f0[i], o) AS f
    FROM (
        SELECT sid, t0, f0, p0, arraySort({order}) AS o
        FROM (
            SELECT user_id, sid, groupArray(toUnixTimestamp64Milli(ts)) AS t0,
                   groupArray(toUInt8(event = 'page_view')
                              + 2 * toUInt8(event != 'page_view' AND event NOT IN {non_interactive:Array(String)})) AS f0,
                   {collect}
            FROM ({scan})
            WHERE {keep}
            GROUP BY user_id, sid
        )
    )
)

-- name: unit_events
-- The events a funnel or a path walks, one unit after the other in (timestamp, event_id) order.
SELECT {unit} AS unit, user_id, ts, event_id, event, page, country, device
FROM ({source})
WHERE {keep}
ORDER BY user_id, unit, ts, event_id
SETTINGS max_execution_time = {timeout_seconds}

-- name: retention
-- Per cohort (period of the user's first-ever start event, which must lie in [start, end)), breakdown
-- value (of that first event) and period index n: the users whose return events fall on n (mode "on")
-- or whose last return period is n (capped at the grid's last period; 'on or after' adds them up).
WITH firsts AS (
    SELECT user_id, min(timestamp) AS first_ts,
           argMin({breakdown}, (timestamp, event_id)) AS value
    FROM events_raw
    WHERE tenant = {tenant:String} AND event = {start_event:String} AND timestamp < {end:DateTime64(3, 'UTC')}
    GROUP BY user_id
    HAVING first_ts >= {start:DateTime64(3, 'UTC')}
),
returns AS (
    SELECT f.user_id AS user_id, {period}(toDate(f.first_ts)) AS cohort, f.value AS value,
           intDiv(dateDiff('{unit}', {period}(toDate(f.first_ts)), {period}(toDate(r.timestamp))), {per_unit}) AS idx
    FROM firsts AS f
    INNER JOIN (
        SELECT user_id, timestamp FROM events_raw
        WHERE tenant = {tenant:String} AND event = {return_event:String}
          AND timestamp >= {start:DateTime64(3, 'UTC')} AND timestamp < {scan_end:DateTime64(3, 'UTC')}
    ) AS r ON r.user_id = f.user_id
)
SELECT {period}(toDate(first_ts)) AS cohort, value, 0 AS n, count() AS users FROM firsts GROUP BY cohort, value
UNION ALL
SELECT cohort, value, n, count() AS users
FROM (
    SELECT user_id, any(cohort) AS cohort, any(value) AS value, arrayJoin({mode_indexes}) AS n
    FROM returns
    WHERE idx >= 1
    GROUP BY user_id
)
GROUP BY cohort, value, n
SETTINGS max_execution_time = {timeout_seconds}

-- name: retention_recent
-- The tenant's start and return events of [lake_end, scan_end): the hours the lake does not hold yet. Only rows:
-- the lake's retention (DuckDB) adds them to its own and computes the grid over both, so a user's events meet
-- in one engine.
SELECT user_id, event, timestamp, event_id, {breakdown} AS value
FROM events_raw
WHERE tenant = {tenant:String} AND event IN ({start_event:String}, {return_event:String})
  AND timestamp >= {lake_end:DateTime64(3, 'UTC')} AND timestamp < {scan_end:DateTime64(3, 'UTC')}
SETTINGS max_execution_time = {timeout_seconds}

-- name: funnel_walk
-- The funnel walked in SQL (ordered and strict modes without exclusions; the same rules as
-- serving/analytics/sequences.py), one row per unit and no row per attempt. Per unit, its step events are
-- collected as separate arrays (times t0, masks m0 with bit k set when the event matches step k+1, event ids
-- e0, breakdown values v0; separate arrays of plain values cost a fraction of one array of tuples) and o,
-- their order by (timestamp, event_id), gives t and m sorted. The chain part gives c1: per position, the
-- times of steps 2 … N an attempt starting there reaches (see serving/analytics/funnel_sql.py); lv: the level
-- of each attempt (step-1 events in [start, end); 0 elsewhere); b: the first attempt reaching the highest
-- level (the earliest among equals); value: the breakdown value of b's step-1 event.
SELECT user_id, unit, level, gaps, {value_pick} AS value
FROM (
    SELECT user_id, unit, o, v0, {chain},
           arrayMap((x, y, c) -> if(bitTest(y, 0) AND x >= {start_ms:Int64} AND x < {end_ms:Int64}, {level}, 0),
                    t, m, c1) AS lv,
           arrayMax(lv) AS level, indexOf(lv, level) AS b, {gaps} AS gaps
    FROM (
        SELECT user_id, unit, o, v0, arrayMap(i -> t0[i], o) AS t, arrayMap(i -> m0[i], o) AS m, arrayEnumerate(o) AS ix
        FROM (
            SELECT user_id, unit, t0, m0, v0, arraySort((i, x, e) -> (x, e), arrayEnumerate(t0), t0, e0) AS o
            FROM (
                SELECT user_id, unit, groupArray(toUnixTimestamp64Milli(ts)) AS t0, groupArray(mask) AS m0,
                       groupArray(event_id) AS e0, {value_array} AS v0
                FROM (SELECT {unit} AS unit, user_id, ts, event_id, {mask} AS mask, {value} AS value
                      FROM ({source}) WHERE {keep})
                GROUP BY user_id, unit
            )
        )
    )
)
WHERE level > 0
SETTINGS max_execution_time = {timeout_seconds}

-- name: funnel_walk_packed
-- funnel_walk without event ids, the hot tier's first pass: each event is one number, its time in ms shifted
-- left by mask_bits plus its step mask, so sorting a unit's numbers sorts its events by time (and, on one
-- millisecond, by mask) with a plain numeric sort; their low bits serve as the masks (bitTest on s), and the
-- walk compares the numbers themselves (attempts: each position's level as a step-1 event in [start, end), 0
-- elsewhere), cutting times out only for the best attempt's gaps. A sentinel after the last event (every mask
-- bit set, a time after any window) ends every step's search. tied: the unit holds events whose order by
-- event id this order may not follow (see the tie placeholder in serving/analytics/funnel_sql.py); its row is
-- not an answer and funnel_walk walks it again. Otherwise the same columns as funnel_walk; the chain
-- placeholders give c2 … cN per position (times: an array t of the times, for the walk that uses one). who:
-- the user id, or only the tied rows' (the engine's choice).
SELECT {who} AS user_id, unit, level, gaps, {value_pick} AS value, tied
FROM (
    SELECT user_id, unit, v, {chain}, {attempts} AS lv,
           arrayMax(lv) AS level, indexOf(lv, level) AS b, {gaps} AS gaps, {tie} AS tied
    FROM (
        SELECT user_id, unit, s, v{times}
        FROM (
            SELECT user_id, unit, arrayPushBack(arraySort(k0), 18446744073709551615) AS s, {value_sort} AS v
            FROM ({grouped})
        )
    )
)
WHERE level > 0 OR tied
SETTINGS max_execution_time = {timeout_seconds}

-- name: funnel_packed_events
-- funnel_walk_packed's units from the raw events: per unit, its step events packed (k0) and, with a breakdown,
-- their values in the same order (v0).
SELECT user_id, unit, groupArray(bitShiftLeft(toUInt64(toUnixTimestamp64Milli(ts)), {mask_bits}) + mask) AS k0,
       {value_array} AS v0
FROM (SELECT {unit} AS unit, user_id, ts, {mask} AS mask, {value} AS value
      FROM ({source}) WHERE {keep})
WHERE {mask_keep}
GROUP BY user_id, unit

-- name: funnel_packed_pieces
-- funnel_packed_events for the users unit from the funnel pieces of the built hours (sql/clickhouse/019_funnel_pieces.sql)
-- and the raw events of the scan's other hours (the ranges placeholder): each piece row's events turned into
-- packed step events by the same mask and value expressions, over the row's arrays (the fields placeholder names
-- the arrays they read, as lambda arguments of the columns' own names), then a user's rows put together. The
-- order of the elements does not matter: funnel_walk_packed sorts them, and the breakdown values travel beside
-- them in the same order (both collected by the same grouping).
SELECT user_id, '' AS unit, groupArrayArray(k) AS k0, {piece_values} AS v0
FROM (
    SELECT user_id, arrayFilter((x, mask) -> {mask_keep}, arrayMap((x, mask) -> bitShiftLeft(toUInt64(x), {mask_bits}) + mask,
                                                                   t, masks), masks) AS k,
           {piece_value_list} AS vs
    FROM (
        SELECT user_id, t, arrayMap(({fields}) -> {mask}, {fields}) AS masks{values}
        FROM funnel_pieces
        WHERE tenant = {tenant:String} AND hour IN {built_hours:Array(DateTime('UTC'))}
    )
    UNION ALL
    SELECT user_id, groupArray(bitShiftLeft(toUInt64(toUnixTimestamp64Milli(ts)), {mask_bits}) + mask) AS k,
           {value_array} AS vs
    FROM (
        SELECT user_id, timestamp AS ts, {mask} AS mask, {value} AS value
        FROM events_raw
        WHERE tenant = {tenant:String} AND ({ranges}) AND {keep}
    )
    WHERE {mask_keep}
    GROUP BY user_id
)
GROUP BY user_id
