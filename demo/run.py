"""``lakehouse demo``: start everything, stream a faulty synthetic clickstream, show what users see."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
from kafka import KafkaConsumer, TopicPartition

from common.hot_store import HotStore, open_hot_store
from common.settings import Settings
from common.terminal import print_table
from demo.clickstream import TENANTS, Clickstream
from demo.ground_truth import unique_valid
from demo.journeys import FUNNEL
from demo.load import FreshnessProbe, post_events
from demo.shop_history import SHOP_TENANT, lay_history
from serving.tenancy.auth import bearer_headers
from stack.app_services import full_stack


def topic_size(settings: Settings, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        begin, end = consumer.beginning_offsets(parts), consumer.end_offsets(parts)
        return sum(end[p] - begin[p] for p in parts)
    finally:
        consumer.close()


def hot_events_since(store: HotStore, started_at: datetime) -> int:
    """Demo events in the hot tier (those received since the demo started)."""
    return store.query_arrow(
        "SELECT count() AS n FROM events_raw WHERE tenant IN {tenants:Array(String)} "
        "AND received_at >= {since:DateTime64(3)}",
        {"tenants": list(TENANTS), "since": started_at.replace(tzinfo=None)},
    ).to_pylist()[0]["n"]


def _answer(response: httpx.Response) -> dict | None:
    if response.status_code >= 400:
        print(f"   ({response.request.url.path} answered {response.status_code}: {response.text[:200]})")
        return None
    return response.json()


def show_shop(client: httpx.Client, shop: str = SHOP_TENANT) -> bool:
    """Product analytics over the shop's four weeks: a funnel, a retention grid, sessions and a custom KPI.
    True when every question was answered."""
    tenant = {"tenant": shop}
    print(f"\n== product analytics, tenant {shop} (four weeks of visits, see docs/product-analytics.md)")
    funnel = _answer(client.post("/v1/funnels", params=tenant, json={"steps": FUNNEL, "range": "7d", "window": "1d"}))
    if funnel:
        print_table(["funnel step (7d, 1-day window)", "users", "% of step 1", "median s to convert"],
                    [(f"{s['step']}. {s['event']}", s["count"],
                      "" if s["conversion_from_first"] is None else f"{100 * s['conversion_from_first']:.1f}",
                      "" if s["time_to_convert_median"] is None else round(s["time_to_convert_median"]))
                     for s in funnel["steps"]])
        print(f"(from {', '.join(funnel['sources'])}, {funnel['took_ms']} ms)")
    grid = _answer(client.post("/v1/retention", params=tenant, json={
        "start_event": "page_view", "period": "week", "periods": 3, "range": "28d"}))
    if grid:
        print()
        print_table(["weekly cohort", "users", "week 1 %", "week 2 %", "week 3 %"],
                    [(c["cohort"], c["size"], *(f"{p:.1f}" for p in c["percentages"][1:])) for c in grid["cohorts"]])
        print(f"(from {', '.join(grid['sources'])}, {grid['took_ms']} ms)")
    sessions = _answer(client.get("/v1/sessions", params={**tenant, "range": "7d"}))
    if sessions:
        totals = sessions["totals"]
        print()
        print_table(["sessions (7d)", "value"], [(k, round(v, 3) if isinstance(v, float) else v)
                                                 for k, v in totals.items() if k in (
                                                     "sessions", "avg_session_duration", "pages_per_session",
                                                     "bounce_rate")])
    client.post("/v1/kpis", params=tenant, json={"name": "avg_order_value", "formula": "revenue / purchases"})
    aov = _answer(client.get("/v1/breakdown", params={**tenant, "metric": "avg_order_value", "by": "country",
                                                      "range": "28d"}))
    if aov:
        print()
        print_table(["country", "avg_order_value (a custom KPI, 28d)"],
                    [(r["country"], None if r["value"] is None else round(r["value"], 2)) for r in aov["rows"]])
    return all(answer is not None for answer in (funnel, grid, sessions, aov))


def run_demo(settings: Settings, seconds: int = 60, rate: int = 2000) -> int:
    print(f"== starting the local stack under {settings.home}")
    full_stack(settings).up()
    store = open_hot_store(settings)
    headers = bearer_headers(settings.admin_key)  # the admin key names each demo tenant with ?tenant=
    client = httpx.Client(base_url=settings.api_url, timeout=30, headers=headers)
    laid = lay_history(settings, store, datetime.now(UTC))
    print(f"== tenant {SHOP_TENANT}: " + (f"{laid:,} events of four weeks of shop visits laid into the lake and the "
                                          "hot tier" if laid else "its four weeks of shop visits are already laid"))
    stream = Clickstream(seed=int(time.time()))
    started_at = datetime.now(UTC)
    dlq_before = topic_size(settings, settings.kafka_dlq_topic)
    sent = []

    print(
        f"== streaming {rate:,} events/s for {seconds}s to {settings.api_url}/events "
        "(out-of-order, 1 % duplicates, 0.5 % malformed), with freshness probes once the stream is warm"
    )
    # The stream's first micro-batches carry Spark's JIT warm-up, which is not what a dashboard sees in
    # steady state: stream 5 s of load and wait until it is visible before probing freshness.
    for _ in range(5):
        batch = stream.batch(rate, datetime.now(UTC))
        sent.extend(batch)
        post_events(client, [e.body for e in batch])
        time.sleep(1)
    warm_deadline = time.monotonic() + 120
    while hot_events_since(store, started_at) < len(unique_valid(sent)) and time.monotonic() < warm_deadline:
        time.sleep(0.5)
    with FreshnessProbe(settings.api_url, interval_s=1.0, headers=headers) as probe:
        deadline = time.monotonic() + seconds
        tick = 0
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            batch = stream.batch(rate, datetime.now(UTC))
            sent.extend(batch)
            result = post_events(client, [e.body for e in batch])
            tick += 1
            if tick % 10 == 0:
                print(
                    f"   {tick:>4}s sent {len(sent):,} events, last second: {result.accepted:,} accepted, "
                    f"{result.rejected} rejected; freshness probes so far {len(probe.latencies)}"
                )
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))

    late = stream.late_batch(200, datetime.now(UTC), timedelta(minutes=settings.stream_watermark_minutes + 15))
    sent.extend(late)
    post_events(client, [e.body for e in late])
    print(f"== sent {len(late)} events {settings.stream_watermark_minutes + 15} min late (past the watermark)")

    expected = len(unique_valid(sent))
    print(f"== waiting until the hot tier holds all {expected:,} distinct valid events …")
    wait_until = time.monotonic() + 180
    count = 0
    while time.monotonic() < wait_until:
        count = hot_events_since(store, started_at)
        if count >= expected:
            break
        time.sleep(1)
    print(f"   hot tier: {count:,} of {expected:,} events")
    late_sql = (
        "SELECT sum(late_rows) AS n FROM stream_progress WHERE query_name = 'hot' "
        "AND finished_at >= {since:DateTime64(3)}"
    )
    late_rows = 0
    late_deadline = time.monotonic() + 60
    while time.monotonic() < late_deadline and late_rows < len(late):
        late_rows = store.query_arrow(late_sql, {"since": started_at.replace(tzinfo=None)}).to_pylist()[0]["n"] or 0
        time.sleep(0.5)

    window = "15m"
    print(f"\n== dashboard: tenant acme, last {window}, page views by country (from /v1/breakdown)")
    views = client.get(
        "/v1/breakdown", params={"metric": "page_views", "tenant": "acme", "range": window, "by": "country"}
    ).json()
    print_table(["country", "page_views"], [(r["country"], r["value"]) for r in views["rows"]])
    metrics = ["events", "page_views", "purchases", "revenue", "unique_users"]
    body = client.post("/v1/query", params={"tenant": "acme"}, json={"metrics": metrics, "range": window}).json()
    print()
    print_table([f"metric (acme, {window})", "value"], list(zip(metrics, body["rows"][0], strict=True)))
    print(f"(one ad-hoc query, {body['took_ms']} ms, from {', '.join(body['sources'])})")

    show_shop(client)
    dlq = topic_size(settings, settings.kafka_dlq_topic) - dlq_before
    fresh = probe.summary()
    print()
    print_table(
        ["pipeline", "value"],
        [
            ("events sent", len(sent)),
            ("rejected → dead-letter topic", dlq),
            ("duplicates sent (dropped by event id)", sum(e.kind == "duplicate" for e in sent)),
            ("late events (past watermark, counted)", late_rows),
            ("freshness p50 (s)", fresh["p50_s"]),
            ("freshness p95 (s)", fresh["p95_s"]),
            ("freshness probes (timeouts)", f"{fresh['probes']} ({fresh['timeouts']})"),
        ],
    )
    print(
        f"\nThe stack keeps running. Open {settings.api_url}/ in a browser for the web dashboard (tenant acme, "
        f"key {settings.admin_key}: the local stack's admin key), "
        f"try `curl -H 'Authorization: Bearer {settings.admin_key}' "
        f"'{settings.api_url}/v1/timeseries?metric=page_views&tenant=acme"
        f"&range=1h&group_by=device'` or `lakehouse query 'SELECT count() FROM events_raw'`; the web dashboard's "
        f"funnel and retention widgets have four weeks of visits under tenant {SHOP_TENANT}; stop it with "
        "`lakehouse stack down`."
    )
    return 0 if count >= expected else 1
