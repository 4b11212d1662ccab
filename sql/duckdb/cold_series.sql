-- A metric's time series from the warm hourly or the cold daily rollups (storage_tiers/cold_query.py).
-- The {placeholders} are filled only from whitelisted constants (view, time column, dimension names,
-- measure expressions); every user value is a DuckDB prepared-statement parameter ($name). Buckets are
-- epoch seconds (UTC) floored to a multiple of $bucket_seconds, as ClickHouse's toStartOfInterval does.
-- A rollup row counts when its period starts in [$start, $end); the dt range prunes the other folders.
-- Missing dimensions read as '' (the hot tier's non-nullable strings store NULL as '').
SELECT
    CAST(bucket AS UINTEGER) AS bucket,
    {group_columns}
    {aggregate} AS value
FROM (
    SELECT
        (epoch_ms({time_column}) // 1000 // $bucket_seconds) * $bucket_seconds AS bucket,
        {dimension_columns}
        {measure_input} AS measure
    FROM {dataset}
    WHERE tenant = $tenant
      AND dt BETWEEN $first_day AND $last_day
      AND {time_column} >= $start
      AND {time_column} < $end
      {conditions}
)
GROUP BY bucket {group_by}
ORDER BY bucket {group_by}
