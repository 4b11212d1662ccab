-- One row per stream micro-batch: input rows, rows dropped as later than the watermark, timings.
-- Feeds the late-events metric and the freshness figures.
CREATE TABLE IF NOT EXISTS stream_progress
(
    query_name      LowCardinality(String),
    batch_id        UInt64,
    finished_at     DateTime64(3, 'UTC'),
    input_rows      UInt64,
    late_rows       UInt64,
    duration_ms     UInt64,
    watermark       Nullable(DateTime64(3, 'UTC'))
)
ENGINE = MergeTree
ORDER BY (query_name, batch_id)
TTL toDateTime(finished_at) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 10000;
