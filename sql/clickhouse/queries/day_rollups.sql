-- The day copies of rollups_1h (common/day_rollups.py; tables in sql/clickhouse/017_rollups_1h_by_day.sql).

-- name: now_ns
-- The hot tier's clock: a build's id, compared with the marks' recorded_at (the same clock).
SELECT toUnixTimestamp64Nano(now64(9)) AS ns

-- name: mark
-- A row of the builds' log: state 2 a build starts, 1 its rows are written, 0 an hour of the day changed.
INSERT INTO rollups_1h_by_day_marks (day, state, build, through)
VALUES ({day:Date}, {state:UInt8}, {build:UInt64}, {through:DateTime('UTC')})

-- name: copy
-- The day's hours before `through` as rollups_1h holds them now, one row per key (the parts' rows merged).
INSERT INTO rollups_1h_by_day
SELECT tenant, event, hour, country, device, page, sum(events), sum(revenue), uniqMergeState(users),
       {build:UInt64}
FROM rollups_1h
WHERE hour >= {day_start:DateTime('UTC')} AND hour < {through:DateTime('UTC')}
GROUP BY tenant, event, hour, country, device, page

-- name: written
-- The stream wrote into these days from `earliest` on: a build that copies a written hour (started or valid) is
-- invalid from now on (the hours are read from rollups_1h until the batch layer builds the day again).
INSERT INTO rollups_1h_by_day_marks (day, state, build, through)
SELECT day, 0, 0, toDateTime(0, 'UTC')
FROM rollups_1h_by_day_marks
WHERE day IN {days:Array(Date)} AND state != 0
GROUP BY day
HAVING max(through) > {earliest:DateTime('UTC')}

-- name: valid
-- Per day of [first, last]: its newest build marked built, if it started after the day's newest change.
SELECT day, b AS build, toUnixTimestamp(t) AS through
FROM (
    SELECT day, maxIf(build, state = 1) AS b, argMaxIf(through, build, state = 1) AS t,
           toUnixTimestamp64Nano(maxIf(recorded_at, state = 0)) AS c
    FROM rollups_1h_by_day_marks
    WHERE day >= {first:Date} AND day <= {last:Date}
    GROUP BY day
)
WHERE b > c
ORDER BY day

-- name: reach
-- How far the day's builds reached (a new build of the day copies at least as far).
SELECT toUnixTimestamp(max(through)) AS through
FROM rollups_1h_by_day_marks
WHERE day = {day:Date} AND state != 0

-- name: present
-- The builds whose rows are in the copy.
SELECT DISTINCT toUInt64(partition) AS build
FROM system.parts
WHERE database = currentDatabase() AND table = 'rollups_1h_by_day' AND active

-- name: log
-- The log of the days those builds copy (to tell which ones are superseded).
SELECT day, state, build, toUnixTimestamp64Nano(recorded_at) AS at
FROM rollups_1h_by_day_marks
WHERE day IN (SELECT day FROM rollups_1h_by_day_marks WHERE state = 2 AND build IN {builds:Array(UInt64)})

-- name: relation
-- A question's rows of a range: the valid builds' hours from the copy, every other hour of the range from rollups_1h
-- (the code writes the hour ranges, which keep the hour partitions pruned). The question's own WHERE applies to both.
(SELECT tenant, event, hour, country, device, page, events, revenue, users
 FROM rollups_1h_by_day WHERE build IN {day_builds:Array(UInt64)}
 UNION ALL
 SELECT tenant, event, hour, country, device, page, events, revenue, users
 FROM rollups_1h WHERE {hour_ranges})

-- name: old_marks
-- The marks a trim removes: recorded before the cutoff, of days none of whose builds is in the copy.
SELECT count() AS n
FROM rollups_1h_by_day_marks
WHERE toUnixTimestamp64Nano(recorded_at) < {cutoff:Int64} AND day NOT IN {kept:Array(Date)}

-- name: trim_marks
-- The log's retention (common/day_rollups.trim_marks): the same rows go.
ALTER TABLE rollups_1h_by_day_marks DELETE
WHERE toUnixTimestamp64Nano(recorded_at) < {cutoff:Int64} AND day NOT IN {kept:Array(Date)}
SETTINGS mutations_sync = 2
