-- Every dashboard answer from the warm (rollups_hourly) and cold (rollups_daily) Parquet tiers. Filled in
-- by serving/query/sql_compile.py like its ClickHouse twin: names from the catalogue only, user values as
-- $parameters. The table placeholder is the relation storage_tiers/lake/reader.py hands over: the rollups' table macro
-- over globs of the range's folders only ($lake_files, a parameter), or an empty relation of the same
-- columns. The dt conditions let DuckDB skip every folder those globs list outside the range without
-- opening it. A missing dimension reads as '' (as in the hot tier). Buckets are epoch seconds (UTC).
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
