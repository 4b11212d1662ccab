-- The day copies' rows shaped by the dashboard's questions (common/day_rollups.py): each build of rollups_1h_by_day
-- (017) also writes here, in the same copy step, its rows re-aggregated without the dimensions a question does not
-- ask for. Shapes: 'total' (tenant, hour: no event, no dimension — totals and series of events, revenue, unique
-- users), 'event' (and the event), 'country', 'device', 'page' (the event and that one dimension); a dimension a
-- shape drops is ''. Grains: 3600, a row per hour as in the copy; 86400, a row per UTC day (hour = the day's start),
-- written when the build copies the whole day, read by questions that hold whole days and bucket no finer than a
-- UTC day. The query engine reads the narrowest shape that answers a question (a filter on one dimension with a
-- breakdown by another reads the copy's full rows), so a 7-day question reads a few thousand rows and merges one
-- unique-user state per day and event, not 168 per hourly key. The stream never writes here: its inserts cost
-- nothing more. A build's rows here share its partition id (build), so a superseded build goes from both tables,
-- and a purge deletes from both.
CREATE TABLE IF NOT EXISTS rollups_1h_by_day_shapes
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
ENGINE = MergeTree  -- a build writes each key once, as in the copy
PARTITION BY build
ORDER BY (tenant, shape, grain, event, hour, country, device, page);

-- Builds written before this table existed have no shaped rows: a build is read from here only when its built mark
-- says it wrote them (1); older builds are read from the copy's full rows until the day is built again.
ALTER TABLE rollups_1h_by_day_marks ADD COLUMN IF NOT EXISTS shaped UInt8 DEFAULT 0;
