-- What the landing files of one hour hold, for the manifest and the run's report (batch/archive.py).
-- Same named parameters as archive_events.sql ($erased: tenants a purge erased from this hour). Rows outside the hour or without an event_id are not
-- archived; the stream never lands such rows in an hour folder, so a non-zero count is worth a look.
SELECT
    count(*) AS landing_rows,
    count(*) FILTER (WHERE "timestamp" IS NULL OR CAST("timestamp" AS TIMESTAMPTZ) < $hour_start
                     OR CAST("timestamp" AS TIMESTAMPTZ) >= $hour_end) AS rows_outside_hour,
    count(*) FILTER (WHERE event_id IS NULL) AS rows_without_event_id,
    count(*) FILTER (WHERE "timestamp" IS NOT NULL AND CAST("timestamp" AS TIMESTAMPTZ) >= $hour_start
                     AND CAST("timestamp" AS TIMESTAMPTZ) < $hour_end AND event_id IS NOT NULL
                     AND list_contains(CAST($erased AS VARCHAR[]), CAST(tenant AS VARCHAR))) AS rows_erased
FROM read_parquet($files, hive_partitioning = false, union_by_name = true)
