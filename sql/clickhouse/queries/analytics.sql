-- Product analytics over the hot tier's raw events (serving/analytics/engine.py fills these in).
-- Brace placeholders are SQL the code writes from whitelists (a section of this file, a catalogue
-- dimension, a period function); every value a user typed is a typed parameter {name:Type}.
-- The order of events is (timestamp, event_id) everywhere: ties on time are broken by the event id.

-- name: scan
-- The tenant's events of [scan_start, scan_end) with the client's session id ('' when not a string).
SELECT user_id, timestamp AS ts, event_id, event, page, country, device,
       JSONExtractString(properties, 'session_id') AS sid
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
-- Sessions whose first event lies in [start, end), grouped by the group placeholder ('' or the entry/exit page).
-- The same sessions as the sessionized section, cut from each (user, client session id)'s events as
-- arrays in (timestamp, event_id) order instead of three window functions over every row: a session
-- starts at the first event, and (without a client id) after a gap over gap_ms or where the 24-hour slice
-- of the chain changes; arraySplit cuts the arrays there, one row per session.
SELECT {group} AS grp, count() AS sessions, sum(duration_ms) AS total_duration_ms, sum(views) AS total_views,
       countIf(views > 0) AS with_views, countIf(views > 0 AND views < 2 AND interactive = 0) AS bounced
FROM (
    SELECT st[1] AS first_ms, st[-1] - st[1] AS duration_ms, toUInt64(arraySum(sv)) AS views,
           arraySum(si) AS interactive, arrayFilter((p, w) -> w = 1, sp, sv) AS view_pages,
           view_pages[1] AS entry_page, view_pages[-1] AS exit_page
    FROM (
        SELECT t, arrayMap(e -> toUInt8(e = 'page_view'), ev.3) AS vw,
               arrayMap(e -> toUInt8(e != 'page_view' AND NOT has({non_interactive:Array(String)}, e)), ev.3) AS it,
               ev.4 AS pg,
               arrayCumSum(arrayMap((d, i) -> toUInt32(i = 1 OR d > {gap_ms:Int64}), arrayDifference(t),
                                    arrayEnumerate(t))) AS chain,
               arrayFill(x -> x > 0, arrayMap((n, x) -> if(n = 1, x, 0),
                                              arrayMap((d, i) -> toUInt8(i = 1 OR d > {gap_ms:Int64}),
                                                       arrayDifference(t), arrayEnumerate(t)), t)) AS chain_start,
               arrayMap((c, x, s) -> c * 100000 + intDiv(x - s, 86400000), chain, t, chain_start) AS piece,
               arrayMap((p, i) -> toUInt8(i = 1 OR (sid = '' AND p != piece[i - 1])), piece, arrayEnumerate(piece))
                   AS cut,
               arraySplit((x, c) -> c, t, cut) AS ts_parts, arraySplit((x, c) -> c, vw, cut) AS view_parts,
               arraySplit((x, c) -> c, it, cut) AS inter_parts, arraySplit((x, c) -> c, pg, cut) AS page_parts
        FROM (
            SELECT user_id, sid, ev, ev.1 AS t
            FROM (
                SELECT user_id, sid,
                       arraySort(x -> (x.1, x.2), groupArray((toUnixTimestamp64Milli(ts), event_id, event, page))) AS ev
                FROM ({scan})
                GROUP BY user_id, sid
            )
        )
    )
    ARRAY JOIN ts_parts AS st, view_parts AS sv, inter_parts AS si, page_parts AS sp
)
WHERE first_ms >= {start_ms:Int64} AND first_ms < {end_ms:Int64}
GROUP BY grp
ORDER BY sessions DESC, grp
SETTINGS max_execution_time = {timeout_seconds}

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

-- name: funnel_walk
-- The funnel walked in SQL (ordered and strict modes without exclusions; the same rules as
-- serving/analytics/sequences.py), one row per unit and no row per attempt: the unit's step events as
-- arrays in (timestamp, event_id) order (t: epoch ms, m: bit k set when the event matches step k+1,
-- v: the breakdown value); a1: the attempts (step-1 events in [start, end)); the nexts part gives, per step and
-- position, the index of the first event from there on matching the step (arrayReverseFill), so each
-- attempt's next step is one lookup (the steps part: a2 … aN, 0 when not reached within the window); lv: the
-- level of each attempt; b: the first attempt reaching the highest level (the earliest among equals).
SELECT user_id, unit, level, gaps, value
FROM (
    SELECT user_id, unit,
           arrayFilter(i -> bitTest(m[i], 0) AND t[i] >= {start_ms:Int64} AND t[i] < {end_ms:Int64}, ix) AS a1,
           arrayMap(i -> t[i] + {window_ms:Int64}, a1) AS lim,
           {nexts}, {steps}, {levels} AS lv,
           arrayMax(lv) AS level, indexOf(lv, level) AS b, {gaps} AS gaps, v[a1[b]] AS value
    FROM (
        SELECT user_id, unit, ev.1 AS t, ev.2 AS m, ev.4 AS v, arrayEnumerate(t) AS ix
        FROM (
            SELECT user_id, unit,
                   arraySort(x -> (x.1, x.3), groupArray((toUnixTimestamp64Milli(ts), mask, event_id, value))) AS ev
            FROM (SELECT {unit} AS unit, user_id, ts, event_id, {mask} AS mask, {value} AS value
                  FROM ({source}) WHERE {keep})
            GROUP BY user_id, unit
        )
    )
)
WHERE notEmpty(a1)
SETTINGS max_execution_time = {timeout_seconds}
