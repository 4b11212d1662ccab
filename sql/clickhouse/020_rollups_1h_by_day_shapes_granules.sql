-- The day copies' shaped rows (018) in granules of at most 256 KiB. A question reads a few rows of the table, but the
-- engine deserializes every unique-user state of each granule it touches: with the default granules (8,192 rows, up
-- to 10 MiB) a 7-day day series of unique users read ~6 MiB of states (its neighbours' hour rows with theirs) to merge
-- eight day rows, about half its time (bench.day_rollups, docs/benchmarks.md). The settings of a table's granules are
-- fixed when it is created: the rows move to a table made with them (the same columns, partitions and order), which
-- takes the old one's place atomically.
CREATE TABLE IF NOT EXISTS rollups_1h_by_day_shapes_020
(
    tenant   LowCardinality(String),
    shape    LowCardinality(String),
    grain    UInt32,
    event    LowCardinality(String),
    hour     DateTime('UTC'),
    country  LowCardinality(String),
    device   LowCardinality(String),
    page     String,
    events   SimpleAggregateFunction(sum, UInt64),
    revenue  SimpleAggregateFunction(sum, Float64),
    users    AggregateFunction(uniq, String),
    build    UInt64
)
ENGINE = MergeTree
PARTITION BY build
ORDER BY (tenant, shape, grain, event, hour, country, device, page)
SETTINGS index_granularity_bytes = 262144;

-- (a crash after the insert and before the exchange: the next run starts the copy again from an empty table)
TRUNCATE TABLE rollups_1h_by_day_shapes_020;

INSERT INTO rollups_1h_by_day_shapes_020
SELECT tenant, shape, grain, event, hour, country, device, page, events, revenue, users, build
FROM rollups_1h_by_day_shapes
SETTINGS max_partitions_per_insert_block = 0;

EXCHANGE TABLES rollups_1h_by_day_shapes AND rollups_1h_by_day_shapes_020;

DROP TABLE IF EXISTS rollups_1h_by_day_shapes_020;
