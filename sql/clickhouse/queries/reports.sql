-- Statements of the scheduled reports (serving/reports/schedule_store.py), one per `-- name:` section.

-- name: schedules_of_tenant
SELECT tenant, id, dashboard, cadence, weekday, at_time, tz, formats, email_to, webhook_url, filters, created
FROM report_schedules FINAL
WHERE tenant = {tenant:String} AND deleted = 0
ORDER BY created, id;

-- name: schedule
SELECT tenant, id, dashboard, cadence, weekday, at_time, tz, formats, email_to, webhook_url, filters, created
FROM report_schedules FINAL
WHERE tenant = {tenant:String} AND id = {id:String} AND deleted = 0;

-- name: all_schedules
SELECT tenant, id, dashboard, cadence, weekday, at_time, tz, formats, email_to, webhook_url, filters, created
FROM report_schedules FINAL
WHERE deleted = 0
ORDER BY tenant, id;

-- name: claims
SELECT generation, run_id, claimed_at
FROM report_claims
WHERE schedule_id = {schedule_id:String} AND period = {period:String} AND channel = {channel:String}
ORDER BY generation, claimed_at;

-- name: outcomes
SELECT channel, generation, kind, run_id, at
FROM report_deliveries
WHERE tenant = {tenant:String} AND schedule_id = {schedule_id:String} AND period = {period:String}
  AND kind IN ('sent', 'failed');

-- name: sent_periods
SELECT schedule_id, period, groupUniqArray(channel) AS channels
FROM report_deliveries
WHERE kind = 'sent' AND at >= {since:DateTime64(3, 'UTC')}
GROUP BY schedule_id, period;

-- name: history
SELECT period, channel, generation, at, kind, run_id, attempt, detail
FROM report_deliveries
WHERE tenant = {tenant:String} AND schedule_id = {schedule_id:String}
ORDER BY at DESC
LIMIT {limit:UInt32};
