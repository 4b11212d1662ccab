-- The lake's views for data scientists and the rollup macros the API reads (storage_tiers/lake/sql.py creates them).
-- Each placeholder in braces is filled before this runs (common/sql_files.py): the relations by
-- read_parquet([...], hive_partitioning = true, hive_types = ...) over the live files of a Delta table's version
-- (archive/events, warm/rollups_hourly, cold/events, cold/rollups_daily: the list comes from the table's log,
-- never from a listing; local or s3://, httpfs is loaded and an S3 secret configured), or by an empty relation
-- with the same columns while the tier has no file; cold_event_days by a VALUES relation of the cold events'
-- days (dt), from the same log. The rollups are read through table macros (lake_rollups_hourly(files),
-- lake_rollups_daily(files)) that take a glob or a file list, so the API hands them only the files of a range
-- (storage_tiers/lake/reader.py).
--
-- Filter on dt (and hour) to read only the folders you need: DuckDB prunes the others without opening
-- them, in every view (EXPLAIN ANALYZE shows "Total Files Read").

-- Days of raw events the cold events' Delta table holds (from its log: each day is one atomic commit).
CREATE OR REPLACE VIEW lake_cold_event_days AS SELECT dt FROM {cold_event_days};

-- events: every raw event once, with the Hive columns dt (DATE) and hour (INTEGER, 0-23, UTC).
-- Warm: the archive's Delta table (archive/events, partitions dt, hour), one row per (tenant, event_id) per
-- hour. Cold: the cold events' Delta table (cold/events, partition dt), compacted per day (hour is computed
-- from the timestamp there). A day is read from exactly one tier: from the cold tier once the cold table holds
-- it, else from the archive. So a day being moved (cold committed, archive rows not yet deleted) counts once. The archive is read as one version of its table:
-- an hour being re-archived is seen before or after its commit, never half.
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

-- rollups_hourly: the warm hourly rollups' Delta table (warm/rollups_hourly, partitions dt, hour_of_day) per
-- tenant, event, country, device, page and hour: events, revenue and the sorted distinct user_ids (unique
-- users over any range: count(DISTINCT u) FROM rollups_hourly, unnest(user_ids) AS t(u)). hour is the
-- hour's start (TIMESTAMPTZ); dt and hour_of_day are the partition columns, for pruning.
CREATE OR REPLACE MACRO lake_rollups_hourly(files) AS TABLE
SELECT tenant, event, country, device, page, CAST(hour AS TIMESTAMPTZ) AS hour,
       events, revenue, user_ids, dt, hour_of_day
FROM read_parquet(files, hive_partitioning = true, hive_types = {'dt': DATE, 'hour_of_day': INTEGER});

CREATE OR REPLACE VIEW rollups_hourly AS SELECT * FROM {warm_rollups_hourly};

-- rollups_daily: the cold daily rollups' Delta table (cold/rollups_daily, partition dt), the same measures per UTC day (day is
-- its midnight, TIMESTAMPTZ; dt the folder). Days whose daily rollup is not built yet are absent.
CREATE OR REPLACE MACRO lake_rollups_daily(files) AS TABLE
SELECT tenant, event, country, device, page, "day", events, revenue, user_ids, dt
FROM read_parquet(files, hive_partitioning = true, hive_types = {'dt': DATE});

CREATE OR REPLACE VIEW rollups_daily AS SELECT * FROM {cold_rollups_daily};

-- day_sketches: per tenant, UTC day ("day", its midnight; dt the same as a DATE) and (dimension, value), ("", "")
-- being the tenant's whole day: the day's exact events, revenue and distinct users, and sketch, a mergeable sketch
-- of those users (common/sketches.py: merge the sketches of any days for their unique users). Days not built are
-- absent. The files are partitioned by month (month=YYYY-MM folders; dt is a column of the files; a complete month
-- is one file), or by dt in a table written before the months (its folder then gives dt): hence no hive_types.
CREATE OR REPLACE MACRO lake_day_sketches(files) AS TABLE
SELECT tenant, dimension, "value", "day", events, revenue, users, sketch, CAST(dt AS DATE) AS dt
FROM read_parquet(files, hive_partitioning = true);

CREATE OR REPLACE VIEW day_sketches AS SELECT * FROM {day_sketches};
