-- 1-minute event-time rollups. The stream job (and later the batch restatement) inserts partial
-- aggregates into the Null table rollups_1m_ingest, carrying the distinct user ids of each group;
-- the materialized view turns them into mergeable uniq states, so unique users can be merged across
-- any range and filter. Partials of the same minute merge; readers use sum()/uniqMerge().
-- Hourly partitions: the batch layer restates an hour with one atomic REPLACE PARTITION.
CREATE TABLE IF NOT EXISTS rollups_1m
(
    tenant   LowCardinality(String),
    event    LowCardinality(String),
    minute   DateTime('UTC'),
    country  LowCardinality(String),
    device   LowCardinality(String),
    page     String,
    events   SimpleAggregateFunction(sum, UInt64),
    revenue  SimpleAggregateFunction(sum, Float64),
    users    AggregateFunction(uniq, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toStartOfHour(minute)
ORDER BY (tenant, event, minute, country, device, page)
TTL minute + INTERVAL 7 DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS rollups_1m_ingest
(
    tenant   String,
    event    String,
    minute   DateTime('UTC'),
    country  String,
    device   String,
    page     String,
    events   UInt64,
    revenue  Float64,
    user_ids Array(String)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollups_1m_mv TO rollups_1m AS
SELECT tenant, event, minute, country, device, page, events, revenue,
       arrayReduce('uniqState', user_ids) AS users
FROM rollups_1m_ingest;
