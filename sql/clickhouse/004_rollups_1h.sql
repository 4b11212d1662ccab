-- Hourly rollups, kept 90 days in the hot tier. Fed by the same partial aggregates as rollups_1m
-- (a second materialized view on rollups_1m_ingest), replaced hour by hour by the batch layer.
-- Partitioned by hour so that a restatement is one atomic REPLACE PARTITION; that is ~2,200
-- partitions over 90 days, each small — acceptable on one node (a cluster may prefer day partitions
-- restated a day at a time).
CREATE TABLE IF NOT EXISTS rollups_1h
(
    tenant   LowCardinality(String),
    event    LowCardinality(String),
    hour     DateTime('UTC'),
    country  LowCardinality(String),
    device   LowCardinality(String),
    page     String,
    events   SimpleAggregateFunction(sum, UInt64),
    revenue  SimpleAggregateFunction(sum, Float64),
    users    AggregateFunction(uniq, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY hour
ORDER BY (tenant, event, hour, country, device, page)
TTL hour + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollups_1h_mv TO rollups_1h AS
SELECT tenant, event, toStartOfHour(minute) AS hour, country, device, page, events, revenue,
       arrayReduce('uniqState', user_ids) AS users
FROM rollups_1m_ingest;
