-- Session pieces (common/session_pieces.py): the session metrics' pre-aggregate of closed hours, built by the
-- batch layer from events_raw each time it restates an hour (batch/restate.py), so late events re-sessionize.
-- One row per (tenant, hour, user, client session id) with the hour's pieces of sessions: the user's events of
-- the hour cut where the gap to the previous one exceeds the session gap (never for a client session id), each
-- piece as its first and last time, its event count, page views, the names of its other events and the pages of
-- its first and last page view. A question merges the pieces of consecutive hours again (the cross-hour gaps)
-- and reads the hours without pieces raw.
CREATE TABLE IF NOT EXISTS session_pieces
(
    tenant      LowCardinality(String),
    hour        DateTime('UTC'),
    user_id     String,
    sid         String,
    first_ms    Array(Int64),
    last_ms     Array(Int64),
    events      Array(UInt32),
    views       Array(UInt32),
    kinds       Array(Array(LowCardinality(String))),
    entry_page  Array(String),
    exit_page   Array(String)
)
ENGINE = MergeTree
PARTITION BY toDate(hour)
ORDER BY (tenant, user_id, sid);
-- Partitions of a day, not an hour: a week's question opens 8 partitions instead of 168 (each one costs as much as
-- reading thousands of rows). Forgetting an hour's pieces is a DELETE mutation of its day, a batch-time cost.

-- Which hours' pieces are built, and with which session gap: a question reads the pieces of the hours whose newest
-- row says built = 1 and the raw events of every other hour. Rows are only added (built = 0 when an hour's pieces are
-- forgotten, before they go; built = 1 once they are written), a few a day; no partitions, so a question reads one
-- small part.
CREATE TABLE IF NOT EXISTS session_piece_hours
(
    hour         DateTime('UTC'),
    built        UInt8,
    gap_ms       Int64,
    events       UInt64,
    recorded_at  DateTime64(9, 'UTC') DEFAULT now64(9)
)
ENGINE = MergeTree
ORDER BY (hour, recorded_at);
