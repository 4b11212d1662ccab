-- The lake's day sketches read for one dimension of one tenant (serving/query/sketch_answers.py). The code fills in
-- the day sketches' relation (table), the question's filters on "value" (where) and ", sketch" when unique users need
-- the sketches merged (sketch; else empty).

-- name: day_rows
SELECT CAST(epoch("day") AS BIGINT) AS day_epoch, "value", events, revenue, users{sketch}
FROM {table}
WHERE tenant = $tenant
  AND dimension = $dimension
  AND dt BETWEEN $first_day AND $last_day
  AND "day" >= $start
  AND "day" < $end
  {where}

-- name: with_months
-- The same read with the range's complete months from their month sketches (months: their relation;
-- storage_tiers.tiers.month_sketches): the day rows of the other days, then one row per month and value carrying its
-- days' revenues and how many days it merged.
SELECT CAST(epoch("day") AS BIGINT) AS day_epoch, "value", events, revenue, [revenue] AS revenues, users,
       1 AS days, sketch
FROM {table}
WHERE tenant = $tenant
  AND dimension = $dimension
  AND dt BETWEEN $first_day AND $last_day
  AND "day" >= $start
  AND "day" < $end
  AND NOT list_contains($merged_months, strftime(dt, '%Y-%m'))
  {where}
UNION ALL
SELECT CAST(epoch("day") AS BIGINT) AS day_epoch, "value", events, revenue, revenues, users, days, sketch
FROM {months}
WHERE tenant = $tenant
  AND dimension = $dimension
  {where}
