-- Clean raw events, kept 7 days in the hot tier for drill-down to single events and for queries on
-- any property. Sort key starts with tenant and event: dashboards always filter on both.
-- Hourly partitions: the batch layer restates an hour with one atomic REPLACE PARTITION.
-- non_replicated_deduplication_window makes insert_deduplication_token effective (exactly-once).
CREATE TABLE IF NOT EXISTS events_raw
(
    tenant      LowCardinality(String),
    event       LowCardinality(String),
    timestamp   DateTime64(3, 'UTC'),
    event_id    String,
    user_id     String,
    page        String,
    country     LowCardinality(String),
    device      LowCardinality(String),
    revenue     Float64,
    properties  String,
    received_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toStartOfHour(toDateTime(timestamp))
ORDER BY (tenant, event, timestamp)
TTL toDateTime(timestamp) + INTERVAL 7 DAY
SETTINGS non_replicated_deduplication_window = 10000;
