-- The batch layer's hourly recompute (batch/hourly.py) in DuckDB, over the same archive files.
--
-- Used by bench/recompute_hour.py to measure PySpark against a single-process engine on one hour,
-- and usable by anyone who wants the exact rollups of an hour without Spark. The output has the
-- same rows and shape as the Spark job: minute rollups as common.rollups.ROLLUP_SCHEMA, the hourly
-- rollup as zstd Parquet with the sorted distinct user ids of each row (unique users stay exactly
-- mergeable across hours and filters).
--
-- Sections start with `-- name: <section>` and run in order, each as one prepared statement.
-- Parameters: $files (list of the hour's archive Parquet files), $hourly_path (Parquet file to write).
-- Times are UTC: the session's TimeZone decides where date_trunc cuts a TIMESTAMPTZ.

-- name: timezone
SET TimeZone = 'UTC';

-- name: events
-- The hour's events, read once (what `.cache()` does in the Spark job); the archive is deduplicated.
CREATE OR REPLACE TEMP TABLE archive_events AS
SELECT tenant, event, "timestamp", event_id, user_id, page, country, device, revenue, properties, received_at
FROM read_parquet($files);

-- name: rollups_minute
SELECT
    tenant,
    event,
    date_trunc('minute', "timestamp") AS minute,
    country,
    device,
    page,
    count(*)::UBIGINT AS events,
    sum(revenue) AS revenue,
    list(DISTINCT user_id ORDER BY user_id) AS user_ids
FROM archive_events
GROUP BY tenant, event, minute, country, device, page;

-- name: rollups_hourly
COPY (
    SELECT
        tenant,
        event,
        country,
        device,
        page,
        date_trunc('hour', "timestamp") AS hour,
        count(*) AS events,
        sum(revenue) AS revenue,
        list(DISTINCT user_id ORDER BY user_id) AS user_ids
    FROM archive_events
    GROUP BY tenant, event, country, device, page, hour
) TO $hourly_path (FORMAT parquet, COMPRESSION zstd);

-- name: raw_events
-- The hour's raw events, which the restatement of the hot tier's events_raw needs (as the Spark job returns).
SELECT * FROM archive_events;
