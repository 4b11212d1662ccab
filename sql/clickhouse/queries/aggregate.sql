-- Every dashboard answer from the hot tier (serving/query/sql_compile.py fills it in, common/sql_files.py).
-- Placeholders in braces without a type are filled only from whitelisted constants (table and column
-- names of the catalogue, aggregate expressions, the server's timeout); every value a user typed is a
-- typed query parameter (name:Type in braces). Buckets are epoch seconds (UTC).
SELECT {select}
FROM {table}
WHERE tenant = {tenant:String}
  AND {time} >= {start:DateTime('UTC')}
  AND {time} < {end:DateTime('UTC')}
  {where}
{group_by}
{having}
{order_by}
{limit}
SETTINGS max_execution_time = {timeout_seconds}
