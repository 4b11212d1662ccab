"""The one settings object, read from the environment (prefix ``LAKEHOUSE_``).

Every stage receives a ``Settings`` instance instead of reading ``os.environ`` itself, so a test
or a Dagster resource can hand a stage its own configuration. Defaults describe the embedded
local stack (``lakehouse stack up``); production points each service elsewhere by setting the
variables listed in the settings table of docs/operations.md (checked against this class by a test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAKEHOUSE_", extra="ignore")

    home: Path = Field(
        default=REPO_ROOT / ".lakehouse",
        description="Folder holding the local stack's data, logs, pid files and checkpoints.",
    )
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "lakehouse",
        description="Download/build cache shared by clones: Kafka and Spark connector jars, the MinIO binary.",
    )

    # Kafka
    kafka_bootstrap: str = Field(default="localhost:19092", description="Kafka bootstrap servers.")
    kafka_topic: str = Field(default="events", description="Topic of valid events.")
    kafka_dlq_topic: str = Field(
        default="events.dlq", description="Dead-letter topic: rejected events with their reason."
    )
    kafka_partitions: int = Field(default=4, description="Partitions of the topics the stack creates.")
    kafka_brokers: int = Field(
        default=1,
        description="Brokers the local stack starts: 1 (one small JVM, replication factor 1) or 3 (a KRaft "
        "cluster as in production: replication factor 3, min.insync.replicas=2, so one broker may fail without "
        "losing an acknowledged event). With 3, list all three in kafka_bootstrap (e.g. "
        "`localhost:19092,localhost:19094,localhost:19096`) or give one and the others take the next even ports.",
    )
    kafka_manage: bool = Field(
        default=True, description="Start a local broker with `stack up` (false: use kafka_bootstrap as is)."
    )
    kafka_delivery_timeout_seconds: float = Field(
        default=25.0, gt=0, le=29,
        description="How long the API's producer keeps retrying a batch (a broker restart moves partition leaders "
        "for a few seconds) before the request fails with 503 (Kafka unreachable); below the request's 30-s "
        "flush wait.",
    )

    # ClickHouse hot tier
    clickhouse_dsn: str = Field(
        default="",
        description="clickhouse-connect DSN of the hot tier: `http://user:pass@host:8123/db` for a server; "
        "empty means embedded chDB in `<home>/chdb`, owned by the hot node.",
    )
    hot_node_url: str = Field(
        default="grpc://127.0.0.1:18815",
        description="Arrow Flight address of the hot node; other processes reach embedded chDB through it.",
    )
    hot_node_token: str = Field(
        default="",
        description="Secret every caller of the hot node's Arrow Flight endpoint must send (compared in constant "
        "time). Empty: the hot node generates one and keeps it in `<home>/run/hot-node.token` (mode 0600), which "
        "local processes of the same home read. Set it on every process when they do not share a home.",
    )
    hot_node_reader_token: str = Field(
        default="",
        description="Optional second secret for the hot node that may only run read-only queries (no inserts, no "
        "commands), e.g. for a notebook; empty means no such token.",
    )
    hot_node_tls_cert: str = Field(
        default="",
        description="PEM certificate (chain) file of the hot node; with hot_node_tls_key it serves Arrow Flight over "
        "TLS, and LAKEHOUSE_HOT_NODE_URL must then be `grpc+tls://host:port`. Empty: plain gRPC (same host or a "
        "private network only).",
    )
    hot_node_tls_key: str = Field(default="", description="PEM private key file matching hot_node_tls_cert.")
    hot_node_tls_ca: str = Field(
        default="",
        description="PEM file of the CA (or the self-signed certificate) that clients verify the hot node's "
        "certificate with, for a `grpc+tls://` URL; empty: the system's trusted roots.",
    )
    hot_store_mode: str = Field(
        default="auto",
        description="How a process reaches the hot tier: `direct` (open clickhouse_dsn itself), `remote` (through "
        "the hot node), `auto` (direct for an http DSN, remote for embedded chDB unless it is the hot node).",
    )
    hot_query_sessions: int = Field(
        default=3, ge=1,
        description="Hot-tier queries one process runs at once, each on a ClickHouse session of its own (the hot "
        "node keeps as many more for its Flight readers). Inserts and commands have a session of their own, so "
        "the stream's writes never wait behind a query.",
    )
    hot_queries_per_tenant: int = Field(
        default=2, ge=1,
        description="At most this many hot-tier queries of one tenant run at once in the API; keep it below "
        "hot_query_sessions so that one tenant's slow queries never take every session.",
    )
    tenant_query_wait_seconds: float = Field(
        default=5.0, ge=0,
        description="How long a tenant's query waits for one of its hot_queries_per_tenant slots before it is "
        "answered 429 (retry shortly).",
    )

    # Lake
    lake_uri: str = Field(
        default="",
        description="Root of the Parquet lake: a local folder or `s3://bucket/prefix`; empty means `<home>/lake`.",
    )
    s3_endpoint: str = Field(default="http://127.0.0.1:19000", description="S3 endpoint (MinIO locally).")
    s3_access_key: str = Field(default="minioadmin", description="S3 access key (local MinIO default only).")
    s3_secret_key: str = Field(default="minioadmin", description="S3 secret key (local MinIO default only).")
    s3_region: str = Field(default="us-east-1", description="S3 region.")
    minio_manage: bool = Field(default=True, description="Start a local MinIO with `stack up`.")

    # Redis
    redis_url: str = Field(default="redis://127.0.0.1:16379/0", description="Redis URL (query cache).")
    redis_manage: bool = Field(default=True, description="Start a local redis-server with `stack up`.")

    cache_ttl_seconds: float = Field(
        default=60.0, description="Lifetime of a cached answer for a range that has ended (±10 % jitter)."
    )
    cache_open_ttl_seconds: float = Field(
        default=0.5,
        description="Lifetime of a cached answer for an open range (ending now): short, so dashboards stay "
        "seconds fresh while a stampede still reaches the hot tier once.",
    )
    cache_write_poll_seconds: float = Field(
        default=0.1,
        description="How often each API process reads the hot tier's write mark: a cached answer of an open range "
        "stops being fresh at the stream's next write, seen within this long (0: the open TTL alone; "
        "serving/hot_writes.py).",
    )
    cache_max_stale_seconds: float = Field(
        default=5.0,
        description="Stale-while-revalidate for open ranges: past its fresh TTL an entry is still answered for up to "
        "this long while one request refreshes it in the background (0 turns it off).",
    )
    fast_cached_reads: bool = Field(
        default=True,
        description="Answer a fresh cached GET /v1/timeseries, /v1/breakdown or /v1/topn before FastAPI's parameter "
        "handling when the same URL (and key's tenant) was already answered and validated by the route; the "
        "answer is the same either way (false: every request goes through the route, as before).",
    )
    log_format: str = Field(
        default="json", description="Serving logs: `json` (one object per line, for machines) or `text` (humans)."
    )
    metrics_refresh_seconds: float = Field(
        default=5.0,
        description="How often the API samples the gauges read from other services for GET /metrics (Kafka lag, "
        "hot-tier freshness, late events).",
    )
    query_timeout_seconds: float = Field(
        default=30.0, description="A dashboard or ad-hoc query running longer is cancelled and answered 504."
    )
    query_day_sketches: bool = Field(
        default=True,
        description="Answer long ranges (past the hot tier's 90 days) of events, revenue and unique users, by at "
        "most one of event/country/device, in UTC days or as totals, from the lake's day sketches "
        "(cold/day_sketches): one row per day instead of every dimension's rows; unique users over several days are "
        "then a HyperLogLog estimate whose error bound the answer states (error_bounds). Only when every day of the "
        "range has current sketches (else the answer is read the old way; the tier movers build missing days, a "
        "few a run). false: always the old way.",
    )
    query_month_sketches: bool = Field(
        default=True,
        description="With the day sketches on, totals over long ranges read each complete month of the range from "
        "the lake's month sketches (cold/month_sketches: the month's day sketches merged, built by the tier movers "
        "after they compact a month) instead of its ~30 day rows, when the month's merge was built from its day "
        "sketches as they are now (else its day rows): the same answers. false: day rows only.",
    )
    lake_metadata_cache: bool = Field(
        default=False,
        description="Keep the Parquet footers of the lake files the API has read (DuckDB's parquet_metadata_cache), "
        "so long ranges over thousands of day files do not re-read them on every query (a 7-year day series: about "
        "half the time); costs a few KB of memory per file read.",
    )
    lake_session_seconds: float = Field(
        default=60.0,
        description="How long the API reuses a listing of the lake's warm/cold partition folders (its lake reader "
        "lists only a range's folders); a folder that got its first file shows up after at most this long.",
    )

    # Product analytics (serving/analytics/, docs/product-analytics.md)
    session_gap_minutes: float = Field(
        default=30.0,
        description="Events of one user without a client `session_id` stay in one session while the gap to the "
        "previous event is at most this long (sessions are also cut into 24-hour slices).",
    )
    non_interactive_events: str = Field(
        default="",
        description="Comma-separated event names that do not count as interaction for the bounce rate (page views "
        "never do); a request may pass its own list.",
    )

    # API
    api_host: str = Field(default="127.0.0.1", description="Bind address of the API (ingestion, queries, hot node).")
    api_port: int = Field(default=18000, description="Port of the HTTP API.")
    api_workers: int = Field(
        default=0,
        ge=0,
        description="HTTP worker processes of `lakehouse serve`. 0: one process serves the API and is the hot node "
        "(embedded chDB). N >= 1: N workers share the API port (one listening socket, SIGHUP restarts them one at a "
        "time) and reach the hot node, started apart with `lakehouse hot-node`, over Arrow Flight; cached "
        "answers and ingestion then keep working while the hot node restarts (docs/operations.md).",
    )
    serving_cpu_nice: int = Field(
        default=5,
        ge=0,
        le=19,
        description="CPU priority the serving processes (`lakehouse serve`, its workers, `lakehouse hot-node`) give "
        "up at start, as a Linux nice value (and their session's autogroup's): idle cores still go to them, but when "
        "the stream wants a core the dashboards' queries wait, so a query storm cannot stall freshness "
        "(docs/operations.md). 0: the stream's priority.",
    )
    hot_node_malloc_arenas: int = Field(
        default=2,
        ge=0,
        description="glibc malloc arenas of the process that owns embedded chDB (`lakehouse serve` with no workers, "
        "`lakehouse hot-node`). Its couple of hundred threads otherwise get up to eight arenas per core, each keeping "
        "what was freed in it, and the resident memory creeps up under a steady load. 0: glibc's default.",
    )
    api_graceful_shutdown_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How long a stopping API worker lets its in-flight requests finish before it closes them.",
    )
    ingest_max_events: int = Field(default=1000, description="Most events accepted in one POST /events.")
    ingest_max_bytes: int = Field(default=1_048_576, description="Largest POST /events body in bytes.")
    request_max_bytes: int = Field(
        default=1_048_576,
        description="Largest request body of any endpoint in bytes (POST /events: the larger of this and "
        "ingest_max_bytes); a longer body, chunked ones included, is refused with 413 as soon as it passes the limit.",
    )
    ingest_max_age_days: int = Field(default=30, description="Events older than this are rejected as invalid.")
    ingest_max_future_seconds: int = Field(default=300, description="Events further ahead than this are rejected.")
    ingest_fast_contract: bool = Field(
        default=True,
        description="POST /events normalizes plain events (known fields, no properties, canonical timestamp) the "
        "short way and every other event through the full contract; the same events and reasons either way "
        "(false: every event through the full contract, as before).",
    )
    ingest_wait_for_kafka: bool = Field(
        default=True,
        description="POST /events answers only once Kafka acknowledged every event (acks=all): an acknowledged event "
        "survives an API crash. false: answer once queued in the producer (faster; events of a crashed API or a failed "
        "delivery are lost, failures counted in lakehouse_ingest_delivery_failures). `?sync=` overrides it per "
        "request.",
    )

    # Tenants, API keys, rate limits (serving/tenancy/auth.py)
    admin_key: str = Field(
        default="local-admin-key",
        description="The bootstrap admin API key: manages tenants and keys and may read/write any tenant "
        "(`?tenant=`). The default is for the local stack only; production must set its own secret.",
    )
    auth_cache_seconds: float = Field(
        default=5.0,
        description="How long each API process keeps its copy of the key table: a revoked key or disabled "
        "tenant stops working on every replica within this time.",
    )
    rate_limit_per_second: float = Field(
        default=50.0, description="Default sustained requests per second of a new API key (token bucket in Redis)."
    )
    rate_limit_burst: int = Field(default=100, description="Default burst (bucket size) of a new API key.")
    rate_limit_redis_url: str = Field(
        default="",
        description="Redis holding the rate-limit buckets; empty means redis_url. Production: a Redis with "
        "`maxmemory-policy noeviction` (a cache under allkeys-lru may evict buckets, resetting them).",
    )
    live_max_streams_per_key: int = Field(
        default=10,
        description="Most live streams (GET /v1/live, GET /v1/ws, GraphQL subscriptions, counted together) one API "
        "key may hold open at once on one API process (each costs a hot query per interval); one more is refused "
        "(429, or WebSocket close code 4429).",
    )

    # Alerts and live updates (serving/alerts*.py, serving/routes/live.py)
    alert_interval_seconds: float = Field(
        default=60.0,
        description="How often the serving process evaluates every enabled alert rule (0 turns the evaluator off).",
    )
    alert_settle_seconds: float = Field(
        default=30.0,
        description="Alert windows end at the last minute boundary at least this long ago, so the stream's "
        "in-flight minute (still filling) never looks like a traffic drop.",
    )
    alert_webhook_timeout_seconds: float = Field(default=5.0, description="Timeout of one webhook POST.")
    alert_webhook_attempts: int = Field(
        default=3,
        description="Webhook attempts per tick (backoff 0.5 s, 1 s, …); an undelivered notification is tried "
        "again next tick.",
    )
    webhook_allow_private_cidrs: str = Field(
        default="",
        description="Comma-separated CIDRs that webhooks (alerts, scheduled reports) may reach although they are "
        "not public (loopback, private, link-local…). Empty in production: a tenant's webhook then reaches "
        "public addresses only. Tests set `127.0.0.1/32` for their local receiver.",
    )
    webhook_allow_hosts: str = Field(
        default="",
        description="Comma-separated host names exempt from the public-address check of webhooks (alerts, "
        "scheduled reports), e.g. an internal relay the operator runs. Empty in production.",
    )
    live_interval_seconds: float = Field(
        default=2.0, description="How often a live stream (GET /v1/live, Server-Sent Events) sends the newest minutes."
    )
    otel_endpoint: str = Field(
        default="",
        description="OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces): the API exports a span per "
        "request and per hot/lake query there. Empty: tracing off.",
    )
    otel_service_name: str = Field(default="lakehouse-api", description="service.name of the exported spans.")
    graphql_introspection: bool = Field(
        default=True,
        description="Answer GraphQL introspection and serve the GraphiQL page at GET /graphql; turn off in production "
        "to keep the schema private.",
    )
    graphql_max_depth: int = Field(default=8, description="Deepest selection a GraphQL document may nest.")
    graphql_max_aliases: int = Field(default=15, description="Most aliases in one GraphQL document.")
    graphql_max_tokens: int = Field(default=2000, description="Most tokens in one GraphQL document (its size).")
    graphql_max_cost: int = Field(
        default=100,
        description="Most cost of one GraphQL document: each field 1, each query-running field "
        "(time series, breakdown, top-N, query, dashboard data) 10 more.",
    )

    # Scheduled reports (serving/reports/, orchestration/reports/)
    smtp_host: str = Field(
        default="",
        description="SMTP server that scheduled reports are mailed through; empty: email delivery is off and a "
        "schedule with email recipients is refused (webhooks still work).",
    )
    smtp_port: int = Field(default=587, description="Port of the SMTP server.")
    smtp_starttls: bool = Field(
        default=True, description="Upgrade the SMTP connection with STARTTLS before logging in and sending."
    )
    smtp_username: str = Field(default="", description="SMTP login; empty: send without logging in.")
    smtp_password: str = Field(default="", description="SMTP password of `smtp_username`.")
    smtp_from: str = Field(
        default="lakehouse-reports@localhost", description="From address of the scheduled reports' emails."
    )
    smtp_timeout_seconds: float = Field(default=30.0, description="Timeout of one SMTP conversation.")
    report_sensor_interval_seconds: int = Field(
        default=60,
        description="How often the Dagster sensor looks for scheduled reports that are due (a report is sent "
        "at most this long after its time).",
    )
    report_delivery_attempts: int = Field(
        default=3,
        description="Attempts of one delivery (email or webhook) within a run, backoff doubling from "
        "`report_retry_backoff_seconds`; after them the run fails and Dagster retries the step (3 times).",
    )
    report_retry_backoff_seconds: float = Field(
        default=2.0, description="Wait before the second attempt of a report delivery (doubling after)."
    )
    report_claim_lease_seconds: int = Field(
        default=900,
        description="How long a run's claim on a report delivery keeps other runs away when that run neither "
        "delivered nor recorded a failure (it crashed); after it another run may deliver the period.",
    )

    # Stream job / Spark
    spark_master: str = Field(default="local[2]", description="spark.master for the stream and batch jobs.")
    spark_conf: str = Field(default="", description="Extra Spark settings as `key=value;key=value`.")
    stream_trigger_seconds: float = Field(default=1.0, description="Micro-batch trigger interval of the stream job.")
    stream_landing_tasks: int = Field(
        default=1, ge=1,
        description="Tasks the stream's landing query runs at once (each writes its own files per hour): one leaves "
        "the other core to the dashboard-facing hot query while a landing batch runs, and still lands ~90,000 "
        "events/s beside it; more lands a backlog faster at freshness' expense.",
    )
    stream_landing_trigger_seconds: float = Field(
        default=30.0, description="Trigger interval of the stream's landing query: valid events to the lake's landing "
        "area (fewer, larger files when longer) and records that break the event contract to the dead-letter topic."
    )
    stream_watermark_minutes: int = Field(
        default=10, description="Event-time watermark: events later than this are late."
    )
    stream_max_offsets_per_trigger: int = Field(
        default=2000,
        description="Most Kafka records the hot query reads per micro-batch (the API packs up to 200 events in a "
        "record); the landing query reads all that arrived at its trigger.",
    )
    stream_kafka_fetch_wait_ms: int = Field(
        default=20, ge=1,
        description="Longest the broker holds a stream task's Kafka fetch that finds no new record "
        "(`fetch.max.wait.ms`, Kafka's default 500). With 500 a hot micro-batch's tasks waited for such fetches and "
        "took ~1 s whatever they read; see docs/benchmarks.md.",
    )
    stream_dedup: Literal["buckets", "spark"] = Field(
        default="buckets",
        description="How the hot query drops repeated `(tenant, event_id)` within the watermark: `buckets` (the "
        "stream's own operator, `stream/jvm`: each of 1,024 buckets of keys forgets its expired keys once a minute) "
        "or `spark` (Spark's `dropDuplicatesWithinWatermark`, which reads its whole state at every micro-batch). The "
        "same events dropped, but for keys remembered up to a minute longer by `buckets`; a hot checkpoint keeps "
        "the way it was started with.",
    )
    stream_typed_instants: bool = Field(
        default=True,
        description="The stream's event contract hands each event's two instants to Spark as timestamps (Arrow "
        "casts the canonical text in the Python worker) instead of text that Spark parses again in every query; "
        "`false` restores the text and Spark's casts (same instants: for side-by-side measurements).",
    )
    checkpoint_dir: str = Field(default="", description="Stream checkpoints; empty means `<home>/checkpoints`.")

    # Batch layer (Dagster)
    partitions_start: str = Field(
        default="2026-11-01",
        description="First hour (UTC) of the batch layer's hourly partitions in Dagster, `YYYY-MM-DD` or "
        "`YYYY-MM-DDTHH:00`: set it to the first hour of data in the lake (the UI lists 24 partitions a day from it).",
    )
    batch_open_hour_wait_seconds: float = Field(
        default=120.0,
        description="How long an hourly batch run waits for its hour to close (the stream's watermark past the "
        "hour's end and the landing caught up with the hot sink) before it refuses to restate an open hour.",
    )
    batch_close_grace_seconds: float = Field(
        default=300.0, ge=0,
        description="How long past an hour's end plus the watermark the wall clock waits before the hour may close "
        "without the stream's watermark passing it (a quiet stream): then, once the hot and landing queries have "
        "processed everything Kafka holds, the hot sink stops adding the hour's events (they are late) and the hour "
        "is closed. Also the hourly schedule's delay past the watermark (minute watermark + this).",
    )
    drift_max_error: float = Field(
        default=0.05,
        description="Stream-vs-batch drift check: largest accepted relative error of the speed layer's event count "
        "per tenant and hour (events later than the watermark are the usual cause); beyond it the check warns.",
    )

    # Tiers and retention (storage_tiers/)
    tier_policy: str = Field(
        default="",
        description="Tier policy file (tiers, horizons, retention per tenant); empty means storage_tiers/tiers.yaml.",
    )
    audit_hmac_key: str = Field(
        default="",
        description="Key of the audit log's HMAC chain, kept outside the lake (a secret store): without it a lake "
        "writer cannot recompute the chain. Empty: generated once into `<home>/secrets/audit-hmac.key` (mode 0600); "
        "every process that appends to or verifies the log needs the same key.",
    )
    audit_anchor_uri: str = Field(
        default="",
        description="Where each append's signed anchor is written as a new object, out of the lake writer's reach: "
        "a folder (default `<home>/audit-anchor`) or `s3://bucket/prefix` of a bucket with Object Lock in "
        "compliance mode.",
    )
    purge_max_share: float = Field(
        default=0.5,
        description="A retention purge that would touch more than this share of the lake's days (cold and warm) "
        "is refused unless confirmed (`lakehouse purge --confirm-large-purge`, or the Dagster `tiers` resource's "
        "`confirm_large_purge`): a wrong policy or clock must not empty the lake.",
    )
    tiers_partitions_start: str = Field(
        default="2019-01-01",
        description="First day (UTC, `YYYY-MM-DD`) of the tier movers' daily partitions in Dagster: the oldest data "
        "that may still be in the lake (7 years of retention back from the first deployment).",
    )

    @field_validator("kafka_brokers")
    @classmethod
    def _one_or_three_brokers(cls, value: int) -> int:
        if value not in (1, 3):
            raise ValueError("LAKEHOUSE_KAFKA_BROKERS must be 1 (one broker) or 3 (a KRaft cluster)")
        return value

    @property
    def chdb_path(self) -> Path:
        return self.home / "chdb"

    @property
    def effective_clickhouse_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{self.chdb_path}"

    @property
    def embedded_clickhouse(self) -> bool:
        return self.effective_clickhouse_dsn.startswith("chdb://")

    @property
    def effective_lake_uri(self) -> str:
        return self.lake_uri or str(self.home / "lake")

    @property
    def effective_checkpoint_dir(self) -> str:
        return self.checkpoint_dir or str(self.home / "checkpoints")

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    def spark_extra_conf(self) -> dict[str, str]:
        pairs = [p for p in self.spark_conf.split(";") if p.strip()]
        out: dict[str, str] = {}
        for pair in pairs:
            if "=" not in pair:
                raise ValueError(f"LAKEHOUSE_SPARK_CONF entry {pair!r} is not key=value; separate entries with ';'")
            key, value = pair.split("=", 1)
            out[key.strip()] = value.strip()
        return out
