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
PARTITION BY hour
ORDER BY (tenant, user_id, sid);

-- The hours whose pieces are built, and with which session gap: a question reads the pieces of these hours and the
-- raw events of the others. Written after the hour's pieces, dropped before them (restating, purging, dropping).
CREATE TABLE IF NOT EXISTS session_piece_hours
(
    hour        DateTime('UTC'),
    gap_ms      Int64,
    events      UInt64,
    built_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY hour
ORDER BY hour;
