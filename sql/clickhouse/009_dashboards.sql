-- Saved dashboards (serving/dashboards.py): a named, per-tenant list of widgets, each a query spec (the JSON
-- of POST /v1/query) and a chart type. A small mutable table: every save inserts the next `version` of the
-- row and a delete inserts a tombstone (deleted = 1) with the next version; readers use FINAL, so every API
-- replica and the CLI see the same state without UPDATEs. `widgets` is the validated JSON text.
CREATE TABLE IF NOT EXISTS dashboards
(
    tenant      String,
    id          String,
    name        String,
    widgets     String,
    version     UInt64,
    deleted     UInt8,
    created     DateTime64(3, 'UTC'),
    updated     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, id);
