-- Every dashboard answer from the hot tier (serving/query/sql_compile.py fills it in, common/sql_files.py).
-- Placeholders in braces without a type are filled only from whitelisted constants (table and column
-- names of the catalogue, aggregate expressions, the server-side timeout clause
-- `SETTINGS max_execution_time = N`, left out over the hot node, whose read-only sessions refuse any
-- setting: the Flight call's own timeout bounds those); every value a user typed is a
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
{server_settings}
