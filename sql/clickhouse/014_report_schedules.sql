-- Scheduled reports (serving/reports/schedules.py, orchestration/reports/): a tenant's schedules, the claims
-- that make each (schedule, period, channel) delivered by one run only, and the delivery history.
--
-- Schedules are a small mutable table like dashboards: a save or a delete inserts the next `version`,
-- readers use FINAL.
CREATE TABLE IF NOT EXISTS report_schedules
(
    tenant      String,
    id          String,
    dashboard   String,
    cadence     LowCardinality(String),
    weekday     UInt8,
    at_time     String,
    tz          String,
    formats     String,
    email_to    String,
    webhook_url String,
    filters     String,
    created     DateTime64(3, 'UTC'),
    deleted     UInt8,
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, id);

-- One row per claim of a (schedule, period, channel): the first insert of a generation wins, because every
-- claim is inserted with the deduplication token `schedule/period/channel/generation` and a later insert
-- with the same token is dropped (kept for the last 100,000 inserts: far more than claims are made within
-- a lease). Whoever reads its own run id back from the generation owns the delivery.
CREATE TABLE IF NOT EXISTS report_claims
(
    tenant      String,
    schedule_id String,
    period      String,
    channel     LowCardinality(String),
    generation  UInt32,
    run_id      String,
    claimed_at  DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (schedule_id, period, channel, generation)
TTL toDateTime(claimed_at) + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 100000;

-- Append-only: every claim, attempt, delivery and failure, shown to the tenant as the schedule's history.
CREATE TABLE IF NOT EXISTS report_deliveries
(
    tenant      String,
    schedule_id String,
    period      String,
    channel     LowCardinality(String),
    generation  UInt32,
    at          DateTime64(3, 'UTC'),
    kind        LowCardinality(String),
    run_id      String,
    attempt     UInt32,
    detail      String
)
ENGINE = MergeTree
ORDER BY (tenant, schedule_id, at)
TTL toDateTime(at) + INTERVAL 400 DAY;
