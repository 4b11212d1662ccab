-- Records and events the stream dead-lettered because they break the event contract (common/events.py),
-- counted per micro-batch of the `dead_letters` query and reason class (the full reason, the source
-- partition/offset and the raw bytes are in the dead-letter topic). Feeds the
-- lakehouse_stream_dead_letter_events metric. The token of each insert makes a replayed batch a no-op.
CREATE TABLE IF NOT EXISTS stream_dead_letters
(
    batch_id    UInt64,
    finished_at DateTime64(3, 'UTC'),
    reason      LowCardinality(String),
    events      UInt64
)
ENGINE = MergeTree
ORDER BY (finished_at, reason)
TTL toDateTime(finished_at) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 10000;
