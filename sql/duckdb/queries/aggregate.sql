-- Every dashboard answer from the warm (rollups_hourly) and cold (rollups_daily) Parquet tiers, over
-- the lake views (storage_tiers). Filled in by serving/sql_compile.py like its ClickHouse twin: names
-- from the catalogue only, user values as $parameters. The dt conditions let DuckDB skip every
-- partition folder outside the range without opening it. Buckets are epoch seconds (UTC).
SELECT {select}
FROM {table}
WHERE tenant = $tenant
  AND dt BETWEEN $first_day AND $last_day
  AND {time} >= $start
  AND {time} < $end
  {where}
{group_by}
{having}
{order_by}
{limit}
