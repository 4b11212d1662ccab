-- Alerts (serving/alerts_store.py): rules, the state of each rule's incident, and its history.
-- Rules and states are small mutable tables: a change inserts a new row with a higher `version` and
-- readers use FINAL (ReplacingMergeTree keeps the newest row per sorting key), so every API replica
-- sees the same rules and a restarted evaluator resumes each incident where it was — it does not
-- notify again. A state row also holds the notifications not yet delivered (`outbox`, a JSON array):
-- the state change and its notification are one insert, so neither exists without the other.
CREATE TABLE IF NOT EXISTS alert_rules
(
    tenant          String,
    id              String,
    name            String,
    metric          String,
    filters         String,
    window_minutes  UInt32,
    condition       String,
    webhook_url     String,
    enabled         UInt8,
    created_at      DateTime64(3, 'UTC'),
    updated_at      DateTime64(3, 'UTC'),
    deleted         UInt8,
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, id);

CREATE TABLE IF NOT EXISTS alert_state
(
    tenant          String,
    rule_id         String,
    state           LowCardinality(String),
    incident_id     String,
    since           Nullable(DateTime64(3, 'UTC')),
    evaluated_at    DateTime64(3, 'UTC'),
    value           Nullable(Float64),
    baseline        Nullable(Float64),
    outbox          String,
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, rule_id);

-- Append-only: evaluations that changed the state, and every delivery attempt with its HTTP status.
CREATE TABLE IF NOT EXISTS alert_history
(
    tenant          String,
    rule_id         String,
    at              DateTime64(3, 'UTC'),
    kind            LowCardinality(String),
    state           LowCardinality(String),
    incident_id     String,
    notification_id String,
    value           Nullable(Float64),
    baseline        Nullable(Float64),
    window_start    Nullable(DateTime64(3, 'UTC')),
    window_end      Nullable(DateTime64(3, 'UTC')),
    attempt         UInt32,
    http_status     Nullable(UInt16),
    detail          String
)
ENGINE = MergeTree
ORDER BY (tenant, rule_id, at)
TTL toDateTime(at) + INTERVAL 90 DAY;
