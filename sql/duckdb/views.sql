-- Views for data scientists over the Parquet archive (batch.archive.duckdb_connection creates them).
-- __ARCHIVE_GLOB__ is replaced by a quoted SQL literal: '<archive>/*/*/*.parquet', where <archive> is
-- common.lake.archive_path(settings), a local folder or s3://bucket/prefix (httpfs is loaded and an S3
-- secret configured before this runs).
--
-- events: every archived event, deduplicated by event_id, one row per event, with the Hive
-- partition columns dt (DATE) and hour (INTEGER, 0-23) taken from the folders. Filter on dt/hour
-- to read only the hours you need (DuckDB prunes the other folders without opening them).
-- The glob sees exactly one version of each hour once its archive run has finished; an hour being
-- re-archived at that moment may briefly show old and new files. The hour's _manifest.json is the
-- exact truth (the files it lists are the hour).
CREATE OR REPLACE VIEW events AS
SELECT *
FROM read_parquet(__ARCHIVE_GLOB__, hive_partitioning = true, hive_types = {'dt': DATE, 'hour': INTEGER});
