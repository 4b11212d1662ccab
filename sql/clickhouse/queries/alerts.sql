-- Statements of the alert store (serving/alerts_store.py), one per `-- name:` section.
-- Rules and states are ReplacingMergeTree tables: read with FINAL, the newest version of each row.

-- name: rules_of_tenant
SELECT tenant, id, name, metric, filters, window_minutes, condition, webhook_url, enabled, created_at, updated_at
FROM alert_rules FINAL
WHERE tenant = {tenant:String} AND deleted = 0
ORDER BY created_at, id;

-- name: rule
SELECT tenant, id, name, metric, filters, window_minutes, condition, webhook_url, enabled, created_at, updated_at
FROM alert_rules FINAL
WHERE tenant = {tenant:String} AND id = {id:String} AND deleted = 0;

-- name: all_rules
SELECT tenant, id, name, metric, filters, window_minutes, condition, webhook_url, enabled, created_at, updated_at
FROM alert_rules FINAL
WHERE deleted = 0
ORDER BY tenant, id;

-- name: states
SELECT tenant, rule_id, state, incident_id, since, evaluated_at, value, baseline, outbox
FROM alert_state FINAL;

-- name: states_of_tenant
SELECT tenant, rule_id, state, incident_id, since, evaluated_at, value, baseline, outbox
FROM alert_state FINAL
WHERE tenant = {tenant:String};

-- name: state
SELECT tenant, rule_id, state, incident_id, since, evaluated_at, value, baseline, outbox
FROM alert_state FINAL
WHERE tenant = {tenant:String} AND rule_id = {rule_id:String};

-- name: history
SELECT at, kind, state, incident_id, notification_id, value, baseline, window_start, window_end, attempt,
       http_status, detail
FROM alert_history
WHERE tenant = {tenant:String} AND rule_id = {rule_id:String}
ORDER BY at DESC
LIMIT {limit:UInt32};
