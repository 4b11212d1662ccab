-- The lake's views for data scientists and the rollup macros the API reads (storage_tiers/lake/sql.py creates them).
-- Each placeholder in braces is filled before this runs (common/sql_files.py): the relations by
-- read_parquet('<dataset>/<glob>', hive_partitioning = true, hive_types = ...) over the dataset's folder (local
-- or s3://, httpfs is loaded and an S3 secret configured), or by an empty relation with the same columns while
-- the tier has no file; cold_events_manifests by the quoted glob '<lake>/cold/events/*/_manifest.json'. The
-- rollups are read through table macros (lake_rollups_hourly(files), lake_rollups_daily(files)) that take a
-- glob or a file list, so the API hands them only the folders of a range (storage_tiers/lake/reader.py).
--
-- Filter on dt (and hour) to read only the folders you need: DuckDB prunes the others without opening
-- them, in every view (EXPLAIN ANALYZE shows "Total Files Read").

-- Days of raw events published in the cold tier: their manifest exists (it is written last).
CREATE OR REPLACE VIEW lake_cold_event_days AS
SELECT DISTINCT TRY_CAST(regexp_extract(file, '/dt=([0-9]{4}-[0-9]{2}-[0-9]{2})/_manifest\.json$', 1) AS DATE) AS dt
FROM glob({cold_events_manifests})
WHERE TRY_CAST(regexp_extract(file, '/dt=([0-9]{4}-[0-9]{2}-[0-9]{2})/_manifest\.json$', 1) AS DATE) IS NOT NULL;

-- events: every raw event once, with the Hive columns dt (DATE) and hour (INTEGER, 0-23, UTC).
-- Warm: the archive (archive/events/dt=/hour=), one row per (tenant, event_id) per hour. Cold: cold/events/dt=,
-- compacted per day (hour is computed from the timestamp there). A day is read from exactly one tier:
-- from the cold tier once its cold manifest is published, else from the archive. So a day being moved
-- (cold published, archive files not yet deleted) counts once, and cold files without a manifest (a
-- move in progress) are ignored. The archive is read by glob: an hour being re-archived at this very
-- moment may briefly show old and new files; its _manifest.json is the exact truth.
CREATE OR REPLACE VIEW events AS
SELECT tenant, event, "timestamp", event_id, user_id, page, country, device, revenue, properties, received_at,
       dt, hour
FROM {archive_events}
WHERE dt NOT IN (SELECT dt FROM lake_cold_event_days)
UNION ALL
SELECT tenant, event, "timestamp", event_id, user_id, page, country, device, revenue, properties, received_at,
       dt, CAST(hour("timestamp" AT TIME ZONE 'UTC') AS INTEGER) AS hour
FROM {cold_events}
WHERE dt IN (SELECT dt FROM lake_cold_event_days);

-- rollups_hourly: the warm hourly rollups (warm/rollups_hourly/dt=/hour=) per tenant, event, country,
-- device, page and hour: events, revenue and the sorted distinct user_ids (unique users over any range:
-- count(DISTINCT u) FROM rollups_hourly, unnest(user_ids) AS t(u)). hour is the hour's start
-- (TIMESTAMPTZ); dt and hour_of_day are the folders, for pruning. The files' own hour column (a
-- timestamp) is shadowed by the hour=HH folder: hour is rebuilt from dt and the folder, the same value.
CREATE OR REPLACE MACRO lake_rollups_hourly(files) AS TABLE
SELECT tenant, event, country, device, page,
       (CAST(dt AS TIMESTAMP) + to_hours(hour)) AT TIME ZONE 'UTC' AS hour,
       events, revenue, user_ids, dt, hour AS hour_of_day
FROM read_parquet(files, hive_partitioning = true, hive_types = {'dt': DATE, 'hour': INTEGER});

CREATE OR REPLACE VIEW rollups_hourly AS SELECT * FROM {warm_rollups_hourly};

-- rollups_daily: the cold daily rollups (cold/rollups_daily/dt=), the same measures per UTC day (day is
-- its midnight, TIMESTAMPTZ; dt the folder). Days whose daily rollup is not built yet are absent.
CREATE OR REPLACE MACRO lake_rollups_daily(files) AS TABLE
SELECT tenant, event, country, device, page, "day", events, revenue, user_ids, dt
FROM read_parquet(files, hive_partitioning = true, hive_types = {'dt': DATE});

CREATE OR REPLACE VIEW rollups_daily AS SELECT * FROM {cold_rollups_daily};
