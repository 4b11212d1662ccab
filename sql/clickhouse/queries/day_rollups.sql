-- The day copies of rollups_1h (common/day_rollups.py; tables in sql/clickhouse/017_rollups_1h_by_day.sql).

-- name: now_ns
-- The hot tier's clock: a build's id, compared with the marks' recorded_at (the same clock).
SELECT toUnixTimestamp64Nano(now64(9)) AS ns

-- name: mark
-- A row of the builds' log: state 2 a build starts, 1 its rows are written, 0 an hour of the day changed; `shaped` 1:
-- the build wrote its shaped rows too (rollups_1h_by_day_shapes, migration 018), day rows only if it copied the whole
-- day; 2: and day rows of the hours it copied, whole day or not.
INSERT INTO rollups_1h_by_day_marks (day, state, build, through, shaped)
VALUES ({day:Date}, {state:UInt8}, {build:UInt64}, {through:DateTime('UTC')}, {shaped:UInt8})

-- name: copy
-- The day's hours before `through` as rollups_1h holds them now, one row per key (the parts' rows merged).
INSERT INTO rollups_1h_by_day
SELECT tenant, event, hour, country, device, page, sum(events), sum(revenue), uniqMergeState(users),
       {build:UInt64}
FROM rollups_1h
WHERE hour >= {day_start:DateTime('UTC')} AND hour < {through:DateTime('UTC')}
GROUP BY tenant, event, hour, country, device, page

-- name: shape_hours
-- The build's rows re-aggregated per shape, a row per hour: without the dimensions each shape drops ('' instead).
INSERT INTO rollups_1h_by_day_shapes
SELECT tenant, 'total', 3600, '', hour, '', '', '', sum(events), sum(revenue), uniqMergeState(users), build
FROM rollups_1h_by_day WHERE build = {build:UInt64} GROUP BY tenant, hour, build
UNION ALL
SELECT tenant, 'event', 3600, event, hour, '', '', '', sum(events), sum(revenue), uniqMergeState(users), build
FROM rollups_1h_by_day WHERE build = {build:UInt64} GROUP BY tenant, event, hour, build
UNION ALL
SELECT tenant, 'country', 3600, event, hour, country, '', '', sum(events), sum(revenue), uniqMergeState(users), build
FROM rollups_1h_by_day WHERE build = {build:UInt64} GROUP BY tenant, event, hour, country, build
UNION ALL
SELECT tenant, 'device', 3600, event, hour, '', device, '', sum(events), sum(revenue), uniqMergeState(users), build
FROM rollups_1h_by_day WHERE build = {build:UInt64} GROUP BY tenant, event, hour, device, build
UNION ALL
SELECT tenant, 'page', 3600, event, hour, '', '', page, sum(events), sum(revenue), uniqMergeState(users), build
FROM rollups_1h_by_day WHERE build = {build:UInt64} GROUP BY tenant, event, hour, page, build

-- name: shape_days
-- The same INSERT also writes each shape's day rows (hour = the day's start) of every hour the build copied (the whole
-- day, or a day's first hours: a question over them all reads one row per key, not one per hour), so a build's shaped
-- rows are one part (a question opens one part per build). Its built mark says so (`shaped` 2).
SELECT tenant, 'total', 86400, '', toStartOfDay(hour), '', '', '', sum(events), sum(revenue), uniqMergeState(users),
       build
FROM rollups_1h_by_day WHERE build = {build:UInt64} GROUP BY tenant, toStartOfDay(hour), build
UNION ALL
SELECT tenant, 'event', 86400, event, toStartOfDay(hour), '', '', '', sum(events), sum(revenue), uniqMergeState(users),
       build
FROM rollups_1h_by_day WHERE build = {build:UInt64} GROUP BY tenant, event, toStartOfDay(hour), build
UNION ALL
SELECT tenant, 'country', 86400, event, toStartOfDay(hour), country, '', '', sum(events), sum(revenue),
       uniqMergeState(users), build
FROM rollups_1h_by_day WHERE build = {build:UInt64} GROUP BY tenant, event, toStartOfDay(hour), country, build
UNION ALL
SELECT tenant, 'device', 86400, event, toStartOfDay(hour), '', device, '', sum(events), sum(revenue),
       uniqMergeState(users), build
FROM rollups_1h_by_day WHERE build = {build:UInt64} GROUP BY tenant, event, toStartOfDay(hour), device, build
UNION ALL
SELECT tenant, 'page', 86400, event, toStartOfDay(hour), '', '', page, sum(events), sum(revenue),
       uniqMergeState(users), build
FROM rollups_1h_by_day WHERE build = {build:UInt64} GROUP BY tenant, event, toStartOfDay(hour), page, build

-- name: written
-- The stream wrote into these days from `earliest` on: a build that copies a written hour (started or valid) is
-- invalid from now on (the hours are read from rollups_1h until the batch layer builds the day again).
INSERT INTO rollups_1h_by_day_marks (day, state, build, through)
SELECT day, 0, 0, toDateTime(0, 'UTC')
FROM rollups_1h_by_day_marks
WHERE day IN {days:Array(Date)} AND state != 0
GROUP BY day
HAVING max(through) > {earliest:DateTime('UTC')}

-- name: marks
-- The log of the days of [first, last] (a few rows a day): which build of each day is valid is decided from it in
-- Python (common.day_rollups.valid_builds), cheaper than grouping here on a question's path.
SELECT day, state, build, toUnixTimestamp(through) AS through, toUnixTimestamp64Nano(recorded_at) AS at, shaped
FROM rollups_1h_by_day_marks
WHERE day >= {first:Date} AND day <= {last:Date}

-- name: reach
-- How far the day's builds reached (a new build of the day copies at least as far).
SELECT toUnixTimestamp(max(through)) AS through
FROM rollups_1h_by_day_marks
WHERE day = {day:Date} AND state != 0

-- name: present
-- The builds whose rows are in the copy or its shapes.
SELECT DISTINCT toUInt64(partition) AS build
FROM system.parts
WHERE database = currentDatabase() AND table IN ('rollups_1h_by_day', 'rollups_1h_by_day_shapes') AND active

-- name: log
-- The log of the days those builds copy (to tell which ones are superseded).
SELECT day, state, build, toUnixTimestamp64Nano(recorded_at) AS at
FROM rollups_1h_by_day_marks
WHERE day IN (SELECT day FROM rollups_1h_by_day_marks WHERE state = 2 AND build IN {builds:Array(UInt64)})

-- name: relation
-- A question's rows of a range: each branch (the code writes them, one per structure read) has the same columns; the
-- rows of every hour of the range no valid build copied come from rollups_1h (the code writes the hour ranges, which
-- keep the hour partitions pruned). The question's own WHERE applies to every branch.
({branches})

-- name: copy_branch
-- The valid builds' full rows (every dimension).
SELECT tenant, event, hour, country, device, page, events, revenue, users
FROM rollups_1h_by_day WHERE build IN {day_builds:Array(UInt64)}

-- name: shape_branch
-- The valid builds' rows of one shape: hour rows of some builds, day rows of others (one branch: each costs a plan).
SELECT tenant, event, hour, country, device, page, events, revenue, users
FROM rollups_1h_by_day_shapes
WHERE shape = {shape:String}
  AND ((grain = 3600 AND build IN {hour_builds:Array(UInt64)}) OR (grain = 86400 AND build IN {whole_day_builds:Array(UInt64)}))

-- name: hours_branch
-- The range's hours no valid build copied.
SELECT tenant, event, hour, country, device, page, events, revenue, users
FROM rollups_1h WHERE {hour_ranges}

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

-- name: hours_total_branch
-- The same hours for a question of the 'total' shape (no event, no dimension): summed per tenant and hour, which
-- rollups_1h's projection `totals` (migration 021) already holds, so the hours' rows are not merged at each question.
SELECT tenant, '' AS event, hour, '' AS country, '' AS device, '' AS page, sum(events) AS events,
       sum(revenue) AS revenue, uniqMergeState(users) AS users
FROM rollups_1h WHERE {hour_ranges}
GROUP BY tenant, hour
