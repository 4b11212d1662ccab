-- Day copies of rollups_1h (common/day_rollups.py): the same rows, merged per key, one partition per build of a UTC
-- day. rollups_1h is partitioned by hour (a restatement swaps one hour atomically), so a 7-day question opens 168
-- small parts, and at these sizes the fixed cost per part dominates; the copy answers the same question from 7 or 8.
-- The batch layer builds a day's copy from rollups_1h (when it restates the day's last hour, and again whenever it
-- restates, purges or moves an hour of a day that was built); the stream never writes it. Each build is a new
-- partition (build = the server's clock in ns when it started), marked built once written; questions read the
-- newest valid build of each day and rollups_1h for every other hour, and superseded builds are dropped.
CREATE TABLE IF NOT EXISTS rollups_1h_by_day
(
    tenant   LowCardinality(String),
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
ENGINE = MergeTree  -- a build writes each key once: nothing for merges to aggregate
PARTITION BY build
ORDER BY (tenant, event, hour, country, device, page);
-- No TTL, as rollups_1h has none (006): when the tier mover drops an hour of a day, the day's builds are superseded
-- and dropped after the grace period.

-- The builds' log, rows only added: state 2 when a build of `day` starts (build = its start, ns; it copies the day's
-- hours before `through`), 1 once its rows are written, 0 after an hour of the day changed in rollups_1h (restated,
-- purged, dropped, written by the stream). A build is valid when it is marked built and started after the day's
-- newest change: it read every change. No partitions: a question reads one small part.
CREATE TABLE IF NOT EXISTS rollups_1h_by_day_marks
(
    day          Date,
    state        UInt8,
    build        UInt64,
    through      DateTime('UTC'),
    recorded_at  DateTime64(9, 'UTC') DEFAULT now64(9)
)
ENGINE = MergeTree
ORDER BY (day, recorded_at);
-- No TTL: a TTL could remove a day's change before the builds it invalidates (rows of different parts go at
-- different merges). A few rows a day.
