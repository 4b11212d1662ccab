-- Staging tables of the batch layer's restatement (batch/restate.py): an hour is built here from
-- the archive, compared with what the stream wrote, then swapped into the live tables with
-- REPLACE PARTITION, which is atomic per table. Same structure as the live tables, no TTL.
CREATE TABLE IF NOT EXISTS events_raw_restate AS events_raw
ENGINE = MergeTree
PARTITION BY toStartOfHour(toDateTime(timestamp))
ORDER BY (tenant, event, timestamp);

CREATE TABLE IF NOT EXISTS rollups_1m_restate AS rollups_1m
ENGINE = AggregatingMergeTree
PARTITION BY toStartOfHour(minute)
ORDER BY (tenant, event, minute, country, device, page);

CREATE TABLE IF NOT EXISTS rollups_1h_restate AS rollups_1h
ENGINE = AggregatingMergeTree
PARTITION BY hour
ORDER BY (tenant, event, hour, country, device, page);

CREATE TABLE IF NOT EXISTS rollups_restate_ingest AS rollups_1m_ingest ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollups_1m_restate_mv TO rollups_1m_restate AS
SELECT tenant, event, minute, country, device, page, events, revenue,
       arrayReduce('uniqState', user_ids) AS users
FROM rollups_restate_ingest;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollups_1h_restate_mv TO rollups_1h_restate AS
SELECT tenant, event, toStartOfHour(minute) AS hour, country, device, page, events, revenue,
       arrayReduce('uniqState', user_ids) AS users
FROM rollups_restate_ingest;
