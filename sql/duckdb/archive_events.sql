-- The archived rows of one hour, in archive order, each with a digest of its content.
-- Run by batch/archive.py with DuckDB named parameters only (no text is pasted into this query):
--   $files       committed landing files of the hour (from the sink's _spark_metadata log)
--   $hour_start  first instant of the hour (TIMESTAMPTZ, UTC)
--   $hour_end    first instant of the next hour
--   $erased      tenants whose rows of this hour a retention purge erased (common/erasures.py): left out,
--                so a late event or a re-run never brings purged rows back
-- The landing holds every event the stream parsed, duplicates (same tenant and event_id sent twice)
-- and late events included. One row per (tenant, event_id) is kept (an event id is unique within its
-- tenant only, so one tenant can never suppress another's events): the first received; ties (the same event landed
-- twice in one receive instant) go to the lowest Kafka partition/offset, then to the row digest, so
-- the choice never depends on file or thread order and re-running gives the same rows.
-- Timestamps are kept to the millisecond, as the event contract defines them (common/events.py).
-- row_digest is archive_row_digest (macros.sql); the archive's content checksum is sha256 over the
-- digests in archive order (batch/archive.py).
WITH landed AS (
    SELECT
        CAST(tenant AS VARCHAR) AS tenant,
        CAST(event AS VARCHAR) AS event,
        date_trunc('millisecond', CAST("timestamp" AS TIMESTAMPTZ)) AS "timestamp",
        CAST(event_id AS VARCHAR) AS event_id,
        CAST(user_id AS VARCHAR) AS user_id,
        CAST(page AS VARCHAR) AS page,
        CAST(country AS VARCHAR) AS country,
        CAST(device AS VARCHAR) AS device,
        CAST(revenue AS DOUBLE) AS revenue,
        CAST(properties AS VARCHAR) AS properties,
        date_trunc('millisecond', CAST(received_at AS TIMESTAMPTZ)) AS received_at,
        kafka_partition,
        kafka_offset
    FROM read_parquet($files, hive_partitioning = false, union_by_name = true)
    WHERE CAST("timestamp" AS TIMESTAMPTZ) >= $hour_start AND CAST("timestamp" AS TIMESTAMPTZ) < $hour_end
      AND event_id IS NOT NULL
      AND NOT list_contains(CAST($erased AS VARCHAR[]), CAST(tenant AS VARCHAR))
),
digested AS (
    SELECT
        *,
        archive_row_digest(
            tenant, event, "timestamp", event_id, user_id, page, country, device, revenue, properties, received_at
        ) AS row_digest
    FROM landed
),
deduplicated AS (
    SELECT *
    FROM digested
    QUALIFY row_number() OVER (
        PARTITION BY tenant, event_id
        ORDER BY received_at ASC NULLS LAST, kafka_partition ASC NULLS LAST, kafka_offset ASC NULLS LAST, row_digest
    ) = 1
)
SELECT
    tenant, event, "timestamp", event_id, user_id, page, country, device, revenue, properties, received_at,
    row_digest
FROM deduplicated
ORDER BY tenant, event, "timestamp", event_id
