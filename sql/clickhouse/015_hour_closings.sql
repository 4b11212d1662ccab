-- Hours the batch layer closed by the wall clock (batch/hour_state.py): a quiet stream's watermark never
-- passes an hour's end, so once the stream has processed everything Kafka held well after it, the batch
-- layer records `closed_through` here and the stream's hot sink adds no event older than the newest
-- `closed_through` any more (they are late: landed, and counted by the batch layer). A first row is
-- written with empty `end_offsets_after`; a second one carries the topic's end offsets read once the
-- first was visible: when the hot and landing queries have committed those, no event of the hour can be
-- inserted by the stream any more, and the hour is closed.
CREATE TABLE IF NOT EXISTS hour_closings
(
    closed_through     DateTime64(3, 'UTC'),
    recorded_at        DateTime64(3, 'UTC'),
    end_offsets_after  String DEFAULT ''
)
ENGINE = MergeTree
ORDER BY (closed_through, recorded_at);
-- No TTL: the newest closed_through must never go back (a few rows a day at most).
