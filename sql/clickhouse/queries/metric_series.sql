-- A metric's time series from the 1-minute rollups. The {placeholders} in braces without a type are
-- filled only from whitelisted constants by serving/metric_query.py; every user value is a typed
-- query parameter ({name:Type}), never text in the statement. Buckets are epoch seconds (UTC).
SELECT
    toUInt32(toStartOfInterval(minute, INTERVAL {bucket_seconds:UInt32} SECOND)) AS bucket,
    {group_columns}
    {aggregate} AS value
FROM rollups_1m
WHERE tenant = {tenant:String}
  AND minute >= {start:DateTime('UTC')}
  AND minute < {end:DateTime('UTC')}
  {conditions}
GROUP BY bucket {group_by}
ORDER BY bucket {group_by}
