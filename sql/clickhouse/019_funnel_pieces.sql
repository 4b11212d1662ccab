-- Funnel pieces: the pre-aggregate of closed hours behind the hot tier's funnels by user (common/session_pieces.py
-- builds and forgets them with the session pieces, in the same restatement of an hour and under the same marks;
-- serving/analytics/engine.py reads them). One row per (tenant, hour, user) holding the hour's events of the user
-- as arrays, one element per event, in no particular order: times (epoch ms) and the columns a funnel's steps,
-- filters and breakdown can name. A funnel's steps are chosen when it is asked, so nothing here depends on them: a
-- question turns each row's events into its packed step events and groups a few rows per user instead of every
-- event. The event ids are not kept: events on one millisecond with different step masks send their unit to the
-- walk that sorts by event id, which reads events_raw.
CREATE TABLE IF NOT EXISTS funnel_pieces
(
    tenant   LowCardinality(String),
    hour     DateTime('UTC'),
    user_id  String,
    t        Array(Int64),
    event    Array(LowCardinality(String)),
    page     Array(String),
    country  Array(LowCardinality(String)),
    device   Array(LowCardinality(String))
)
ENGINE = MergeTree
PARTITION BY toDate(hour)
ORDER BY (tenant, user_id);

-- A mark written by a build that also wrote the hour's funnel pieces: funnels read only hours marked so (an hour
-- marked built before this table existed holds session pieces only, and is read raw until it is restated again).
ALTER TABLE session_piece_hours ADD COLUMN IF NOT EXISTS funnel UInt8 DEFAULT 0;
