"""GET /metrics tells the truth about ingestion, queries, the cache and the stream, and every request
leaves one JSON log line carrying its request id."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from common import procfs
from common.hot_store import HotStore
from common.settings import Settings
from stack.process import read_pid
from tests.integration.conftest import wait_for
from tests.integration.hot_truth import hot_minutes, late_rows_total

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(api: httpx.Client) -> Samples:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def events(tenant: str, n: int, at: datetime) -> list[dict]:
    return [{"event": "page_view", "timestamp": (at + timedelta(milliseconds=i)).isoformat(), "user_id": f"u{i}",
             "tenant": tenant, "country": "FR"} for i in range(n)]


def test_metrics_follow_ingestion_queries_and_the_cache(api: httpx.Client, settings: Settings, tenant: str) -> None:
    before = scrape(api)
    now = datetime.now(UTC)
    bad = [{"timestamp": now.isoformat(), "user_id": "x"}, {"event": "page_view", "user_id": "y"},
           {"event": "page_view", "timestamp": (now - timedelta(days=60)).isoformat(), "user_id": "z"}]
    answer = api.post("/events", params={"sync": "true"}, json=events(tenant, 25, now) + bad).json()
    assert (answer["accepted"], answer["rejected"]) == (25, 3)

    end = now.replace(second=0, microsecond=0) - timedelta(minutes=5)
    params = {"metric": "events", "tenant": tenant, "from": (end - timedelta(hours=1)).isoformat(),
              "to": end.isoformat()}
    assert [api.get("/v1/timeseries", params=params).headers["x-cache"] for _ in range(3)] == ["miss", "hit", "hit"]
    after = scrape(api)
    stats = api.get("/stats").json()["cache"]

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("lakehouse_ingest_events_accepted_total") == 25
    assert delta("lakehouse_ingest_events_rejected_total", reason="missing_field") == 2
    assert delta("lakehouse_ingest_events_rejected_total", reason="too_old") == 1
    assert delta("lakehouse_query_duration_seconds_count", endpoint="/v1/timeseries", tier="hot") == 1
    assert delta("lakehouse_query_duration_seconds_count", endpoint="/v1/timeseries", tier="cache") == 2
    assert delta("lakehouse_cache_requests_total", outcome="miss") == 1
    assert delta("lakehouse_cache_requests_total", outcome="hit") == 2
    assert delta("lakehouse_http_requests_total", method="POST", route="/events", status="200") == 1
    assert value(after, "lakehouse_cache_hit_ratio") == pytest.approx(stats["hit_ratio"], abs=1e-4)
    for outcome, key in (("hit", "hits"), ("miss", "misses"), ("stale", "stale"), ("bypass", "bypassed")):
        assert value(after, "lakehouse_cache_requests_total", outcome=outcome) == stats[key]
    assert ("lakehouse_rate_limit_local_total", ()) in after


def test_stream_lag_freshness_and_late_events_are_exposed(
    api: httpx.Client, hot: HotStore, settings: Settings, tenant: str
) -> None:
    api.post("/events", params={"sync": "true"}, json=events(tenant, 40, datetime.now(UTC)))
    wait_for(lambda: sum(m["events"] for m in hot_minutes(hot, tenant).values()) == 40, 240,
             "the stream to write the 40 events")
    processed_at = time.time()

    def caught_up() -> bool:  # a sample taken after the stream processed them says: no lag, fresh data
        samples = scrape(api)
        sampled_after = time.time() - samples.get(("lakehouse_metrics_sample_age_seconds", ()), 1e9) > processed_at
        lag = samples.get(("lakehouse_stream_consumer_lag_total_records", (("query", "hot"),)))
        age = samples.get(("lakehouse_hot_newest_event_age_seconds", ()))
        return sampled_after and lag == 0 and age is not None and age < 600

    wait_for(caught_up, 60, "lag 0 and a fresh newest event in /metrics", interval=1)
    samples = scrape(api)
    assert value(samples, "lakehouse_stream_last_batch_age_seconds", query="hot") < 600
    assert ("lakehouse_stream_consumer_lag_records", (("partition", "0"), ("query", "hot"))) in samples

    late_before = late_rows_total(hot)
    # far behind the watermark (10 min) the stream has moved past: dropped and counted as late
    api.post("/events", params={"sync": "true"}, json=events(tenant, 5, datetime.now(UTC) - timedelta(hours=2)))
    wait_for(lambda: late_rows_total(hot) >= late_before + 5, 240, "the late events in stream_progress")
    wait_for(lambda: value(scrape(api), "lakehouse_stream_late_events_total", query="hot") == late_rows_total(hot),
             30, "the late-event counter of /metrics to match stream_progress", interval=1)


def test_a_request_leaves_one_json_log_line_with_its_request_id(
    api: httpx.Client, settings: Settings, tenant: str
) -> None:
    request_id = f"h7-{uuid.uuid4().hex}"
    response = api.get("/v1/timeseries", params={"metric": "events", "tenant": tenant, "range": "1h"},
                       headers={"X-Request-ID": request_id})
    assert response.status_code == 200 and response.headers["x-request-id"] == request_id
    generated = api.get("/health").headers["x-request-id"]
    assert len(generated) == 32

    def lines_with(needle: str) -> list[dict]:
        text = (settings.home / "logs" / "api.log").read_text()
        return [json.loads(line) for line in text.splitlines() if needle in line]

    wait_for(lambda: len(lines_with(request_id)) == 1 and len(lines_with(generated)) == 1, 10, "the log lines")
    line = lines_with(request_id)[0]
    assert line["request_id"] == request_id and line["level"] == "info" and line["logger"] == "lakehouse.access"
    assert (line["method"], line["path"], line["status"], line["tenant"]) == ("GET", "/v1/timeseries", 200, tenant)
    assert line["cache"] == response.headers["x-cache"] and line["duration_ms"] > 0
    datetime.fromisoformat(line["ts"].replace("Z", "+00:00"))
    assert lines_with(generated)[0]["path"] == "/health"


def test_the_hot_nodes_memory_is_exposed_by_part(api: httpx.Client, settings: Settings) -> None:
    """The engine's figures and the process's heaps are each a part of the hot node's resident memory, read by the
    kernel (/proc): an operator can tell a cache filling up from a leak."""
    wait_for(lambda: value(scrape(api), "lakehouse_hot_engine_memory", part="JemallocResident") > 0, 60,
             "the engine's memory figures in /metrics", interval=1)
    samples = scrape(api)
    record = read_pid(settings.home / "run" / "api.pid")
    assert record is not None
    rss_kib = procfs.resident_kib(record.pid)
    assert rss_kib is not None
    rss = rss_kib * 1024

    def engine(part: str) -> float:
        return value(samples, "lakehouse_hot_engine_memory", part=part)

    assert 0 < engine("JemallocAllocated") <= engine("JemallocResident")
    glibc = value(samples, "lakehouse_process_heap_bytes", part="glibc_in_use")
    assert glibc > 0 and value(samples, "lakehouse_process_heap_bytes", part="arrow_pool") >= 0
    assert engine("JemallocResident") + glibc < rss
    assert 0 < engine("MemoryTracking") < rss
    assert engine("ActiveParts") >= 1 and engine("OutdatedParts") >= 0  # the stream and the migrations wrote tables
    for cache in ("MarkCacheBytes", "PrimaryIndexCacheBytes", "QueryConditionCacheBytes"):
        assert 0 <= engine(cache) < rss


def test_the_api_yields_the_cpu_to_the_stream(api: httpx.Client, settings: Settings) -> None:
    """The serving process runs below the stream's priority (LAKEHOUSE_SERVING_CPU_NICE), and so do its threads:
    a dashboard's query storm cannot take the cores the stream's micro-batches need."""
    assert api.get("/health").status_code == 200
    record = read_pid(settings.home / "run" / "api.pid")
    assert record is not None and settings.serving_cpu_nice > 0
    expected = max(settings.serving_cpu_nice, os.getpriority(os.PRIO_PROCESS, 0))  # a niced runner's stays
    assert procfs.nice_value(record.pid) == expected
    tasks = list((procfs.PROC / str(record.pid) / "task").iterdir())
    assert len(tasks) > 10  # the engine's and the server's threads, and those the imports started before ours
    # but chDB's memory statistics thread, which raises its own priority when the process may (root)
    ours = [int(t.name) for t in tasks if (t / "comm").read_text().strip() != "MemoryWorker"]
    assert {procfs.nice_value(record.pid, t) for t in ours} - {None} == {expected}
    if procfs.autogroup_nice(record.pid) is not None:  # a kernel with autogroups: the session yields too
        assert procfs.autogroup_nice(record.pid) == settings.serving_cpu_nice
