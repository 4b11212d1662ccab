-- Row digests of an archived hour in archive order (batch/archive.py content_checksum, verify_hour).
--   $files    the hour's live data files, as the archive table's log lists them
--   $without  tenants whose rows are left out (the purge computes the checksum of what a delete will keep)
-- The order is the archive's sort key, which is total (event_id is unique within an hour), so the
-- digests do not depend on how the rows are split into files. Hashing them in this order must give the
-- checksum in the hour's commit: that proves the content independently of the run that wrote it.
SELECT archive_row_digest(
    tenant, event, "timestamp", event_id, user_id, page, country, device, revenue, properties, received_at
) AS row_digest
FROM read_parquet($files, hive_partitioning = false)
WHERE NOT list_contains($without, tenant)
ORDER BY tenant, event, "timestamp", event_id
