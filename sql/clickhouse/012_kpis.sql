-- Custom KPIs (serving/analytics/kpis.py): a tenant's named formulas over catalogue metrics, e.g.
-- revenue / purchases. Like dashboards, a small mutable table: every save inserts the next `version` of the
-- row, a delete a tombstone (deleted = 1); readers use FINAL. `formula` is the text as the tenant wrote it,
-- checked by serving/query/kpi.py before it is stored and again when it is read.
CREATE TABLE IF NOT EXISTS kpis
(
    tenant      String,
    name        String,
    formula     String,
    description String,
    version     UInt64,
    deleted     UInt8,
    updated     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, name);
