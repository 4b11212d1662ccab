-- The Kafka offsets each micro-batch has processed up to (Spark's endOffset JSON of the batch's source,
-- e.g. {"events":{"0":1234,"1":1180}}): the API's GET /metrics subtracts them from the topic's latest
-- offsets to expose the stream's consumer lag. Empty for rows written before this migration.
ALTER TABLE stream_progress ADD COLUMN IF NOT EXISTS end_offsets String DEFAULT '';
