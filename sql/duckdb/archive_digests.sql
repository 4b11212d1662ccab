-- Row digests of a published hour in the order its files store the rows (batch/archive.py verify_hour).
--   $files  the data files the hour's manifest lists, in manifest order
-- Hashing these in this order must give the manifest's checksum: that proves the content and the
-- sort order both, independently of the run that wrote the files.
SELECT archive_row_digest(
    tenant, event, "timestamp", event_id, user_id, page, country, device, revenue, properties, received_at
) AS row_digest
FROM read_parquet($files, hive_partitioning = false, filename = true, file_row_number = true)
ORDER BY list_position($files, filename), file_row_number
