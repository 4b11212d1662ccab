-- Product analytics over the lake's raw events (the `events` view of sql/duckdb/views.sql: the archive
-- and the cold tier, each day read from one of them). The twin of sql/clickhouse/queries/analytics.sql,
-- filled in by serving/analytics/engine.py: brace placeholders are SQL from the code's whitelists,
-- every value a user typed is a $parameter. The dt conditions prune the folders outside the scan.
-- The order of events is (timestamp, event_id) everywhere: ties on time are broken by the event id.

-- name: scan
-- The tenant's events of [scan_start, scan_end) with the client's session id ('' when not a string).
SELECT user_id, "timestamp" AS ts, event_id, event, coalesce(page, '') AS page, coalesce(country, '') AS country,
       coalesce(device, '') AS device,
       CASE WHEN try(json_type(properties, '$.session_id')) = 'VARCHAR'
            THEN json_extract_string(properties, '$.session_id') ELSE '' END AS sid
FROM events
WHERE tenant = $tenant
  AND dt BETWEEN $scan_first_day AND $scan_last_day
  AND "timestamp" >= $scan_start
  AND "timestamp" < $scan_end

-- name: sessionized
-- Every event with its session: the client's id when sent; otherwise a chain of the user's events with
-- gaps of at most gap_ms, cut into 24-hour slices counted from the chain's first event.
SELECT user_id, ts, event_id, event, page, country, device,
       CASE WHEN sid != '' THEN 'c:' || sid
            ELSE 's:' || chain || ':' || ((epoch_ms(ts) - epoch_ms(chain_start)) // 86400000) END AS session
FROM (
    SELECT *, min(ts) OVER (PARTITION BY user_id, sid, chain) AS chain_start
    FROM (
        SELECT *, sum(new_chain) OVER (PARTITION BY user_id, sid ORDER BY ts, event_id
                                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS chain
        FROM (
            SELECT *,
                   CASE WHEN lag(ts) OVER w IS NULL OR epoch_ms(ts) - epoch_ms(lag(ts) OVER w) > $gap_ms
                        THEN 1 ELSE 0 END AS new_chain
            FROM ({scan})
            WINDOW w AS (PARTITION BY user_id, sid ORDER BY ts, event_id)
        )
    )
)

-- name: session_metrics
-- Sessions whose first event lies in [start, end), grouped by the group placeholder ('' or the entry/exit page).
SELECT {group} AS grp, count(*) AS sessions, CAST(sum(duration_ms) AS BIGINT) AS total_duration_ms,
       CAST(sum(views) AS BIGINT) AS total_views,
       count(*) FILTER (WHERE views > 0) AS with_views,
       count(*) FILTER (WHERE views > 0 AND views < 2 AND interactive = 0) AS bounced
FROM (
    SELECT user_id, session, min(ts) AS first_ts, epoch_ms(max(ts)) - epoch_ms(min(ts)) AS duration_ms,
           count(*) FILTER (WHERE event = 'page_view') AS views,
           count(*) FILTER (WHERE event != 'page_view' AND NOT list_contains($non_interactive, event)) AS interactive,
           coalesce(arg_min(page, (ts, event_id)) FILTER (WHERE event = 'page_view'), '') AS entry_page,
           coalesce(arg_max(page, (ts, event_id)) FILTER (WHERE event = 'page_view'), '') AS exit_page
    FROM ({sessionized})
    GROUP BY user_id, session
)
WHERE first_ts >= $start AND first_ts < $end
GROUP BY grp
ORDER BY sessions DESC, grp

-- name: unit_events
-- The events a funnel or a path walks, one unit after the other in (timestamp, event_id) order.
SELECT {unit} AS unit, user_id, ts, event_id, event, page, country, device
FROM ({source})
WHERE {keep}
ORDER BY user_id, unit, ts, event_id

-- name: retention
-- Per cohort (period of the user's first-ever start event, which must lie in [start, end)), breakdown
-- value (of that first event) and period index n: the users whose return events fall on n (mode 'on')
-- or whose last return period is n (capped at the grid's last period; 'on or after' adds them up).
-- One pass over the files: the start and return events of the tenant before lake_end, read once (lake_end is
-- the scan's end, or where the lake's hours end when the hot tier's rows of the later hours come in through the
-- recent placeholder: empty, or UNION ALL the retention_recent section).
WITH picked AS MATERIALIZED (
    SELECT user_id, event, "timestamp", event_id, {breakdown} AS value
    FROM events
    WHERE tenant = $tenant AND event IN ($start_event, $return_event) AND dt <= $scan_last_day
      AND "timestamp" < $lake_end
    {recent}
),
firsts AS (
    SELECT user_id, min("timestamp") AS first_ts, arg_min(value, ("timestamp", event_id)) AS value
    FROM picked
    WHERE event = $start_event AND "timestamp" < $end
    GROUP BY user_id
    HAVING min("timestamp") >= $start
),
returns AS (
    SELECT f.user_id AS user_id, date_trunc('{period}', f.first_ts) AS cohort, f.value AS value,
           date_diff('{unit}', date_trunc('{period}', f.first_ts), date_trunc('{period}', r."timestamp"))
               // {per_unit} AS idx
    FROM firsts AS f
    INNER JOIN (
        SELECT user_id, "timestamp" FROM picked WHERE event = $return_event AND "timestamp" >= $start
    ) AS r ON r.user_id = f.user_id
)
SELECT date_trunc('{period}', first_ts) AS cohort, value, 0 AS n, count(*) AS users FROM firsts GROUP BY ALL
UNION ALL
SELECT cohort, value, n, count(*) AS users
FROM (
    SELECT user_id, any_value(cohort) AS cohort, any_value(value) AS value, unnest({mode_indexes}) AS n
    FROM returns
    WHERE idx >= 1
    GROUP BY user_id
)
GROUP BY ALL

-- name: retention_recent
-- The hot tier's start and return events of the hours from lake_end on (the ClickHouse section
-- retention_recent), handed over as the Arrow table recent_events: the same columns as the lake's rows.
SELECT user_id, event, CAST("timestamp" AS TIMESTAMPTZ) AS "timestamp", event_id, value FROM recent_events

-- name: funnel_walk
-- The funnel walked in SQL, the twin of the ClickHouse section (ordered and strict modes without
-- exclusions; the rules of serving/analytics/sequences.py). rn numbers a unit's step events in
-- (timestamp, event_id) order; the nexts part gives per event and step k the first later event matching step k
-- (x2 … xN); the attempts (step-1 events in [start, end)) then follow their steps by joins on rn
-- (the joins part: s2 … sN, absent when the step is not reached within the window); per unit the attempt
-- reaching the most steps, the earliest among equals.
WITH numbered AS (
    SELECT *, row_number() OVER (PARTITION BY user_id, unit ORDER BY t, event_id) AS rn
    FROM (SELECT {unit} AS unit, user_id, epoch_ms(ts) AS t, event_id, {mask} AS mask, {value} AS value
          FROM ({source}) WHERE {keep})
),
steps AS (
    SELECT *, {nexts} FROM numbered
),
walked AS (
    SELECT s1.user_id, s1.unit, s1.rn, s1.value, {level} AS level, {gaps} AS gaps
    FROM steps AS s1 {joins}
    WHERE (s1.mask & 1) != 0 AND s1.t >= $start_ms AND s1.t < $end_ms
)
SELECT user_id, unit, max(level) AS level, arg_max(gaps, level * 4294967296 - rn) AS gaps,
       arg_max(value, level * 4294967296 - rn) AS value
FROM walked
GROUP BY user_id, unit
