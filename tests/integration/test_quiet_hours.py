"""A quiet hour closes by the wall clock on the real stack, and not while events of it wait in Kafka.

With no traffic the stream's watermark never passes an hour's end, so the batch layer closes the hour
by the wall clock (``batch.hour_state``): only once the stream's hot and landing queries have
committed everything Kafka holds, and by sealing it so that the hot sink adds none of its events
afterwards. The hour here is two hours old (its end plus the watermark plus the grace is long past).

The stream is restarted on a topic, checkpoint and lake of its own, with the session's progress rows
and seals set aside meanwhile (earlier tests' traffic moved the session's watermark past this hour,
which closes it the ordinary way); everything is put back afterwards and the session's stream restarted.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest
from kafka import KafkaProducer

from batch.hour_state import CLOSINGS_TABLE, offsets_behind, parse_offsets
from common.hot_store import HotStore
from common.kafka_offsets import topic_end_offsets
from common.lake import committed_files, landing_path
from common.settings import Settings
from orchestration.closed_hours import current_hour_state
from orchestration.hours import floor_hour
from stack import ensure_topics
from stack.services import Stack
from tests.integration import direct_hot
from tests.integration.conftest import wait_for
from tests.integration.hot_truth import late_rows_total
from tests.integration.own_services import environment, stream_of_its_own

pytestmark = pytest.mark.integration

SET_ASIDE = ("stream_progress", CLOSINGS_TABLE)


@dataclass
class QuietStream:
    settings: Settings  # the stream's own topic and lake
    tenant: str
    hour: datetime


def set_aside(hot: HotStore) -> None:
    for table in SET_ASIDE:
        hot.command(f"DROP TABLE IF EXISTS {table}_set_aside")
        hot.command(f"CREATE TABLE {table}_set_aside AS {table}")
        hot.command(f"INSERT INTO {table}_set_aside SELECT * FROM {table} SETTINGS insert_deduplicate = 0")
        hot.command(f"TRUNCATE TABLE {table}")


def put_back(hot: HotStore) -> None:
    for table in SET_ASIDE:
        hot.command(f"TRUNCATE TABLE {table}")
        hot.command(f"INSERT INTO {table} SELECT * FROM {table}_set_aside SETTINGS insert_deduplicate = 0")
        hot.command(f"DROP TABLE {table}_set_aside")


@pytest.fixture()
def quiet_stream(stack: Stack, hot: HotStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuietStream]:
    overrides = stream_of_its_own("quiet", tmp_path_factory.mktemp("quiet"))
    stack.down(["stream"])
    set_aside(hot)
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    direct_hot.WRITTEN[tenant] = hot  # its rows are deleted after the module: the session's lake never holds them
    try:
        with environment(overrides):  # the stream service is spawned with this process's environment
            settings = Settings()
            ensure_topics(settings)
            stack.up(["stream"])
            yield QuietStream(settings, tenant, floor_hour(datetime.now(UTC)) - timedelta(hours=2))
            stack.down(["stream"])
    finally:
        put_back(hot)
        stack.up(["stream"])  # the session's stream again, on its own checkpoint


def produce(settings: Settings, tenant: str, at: datetime, n: int) -> None:
    """One Kafka record holding ``n`` events of ``tenant`` at ``at``, as any producer may write it."""
    stamp = at.isoformat()
    events = [{"tenant": tenant, "event": "page_view", "timestamp": stamp, "event_id": uuid.uuid4().hex,
               "user_id": f"u{i}", "page": "/", "country": "DE", "device": "mobile"} for i in range(n)]
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        producer.send(settings.kafka_topic, json.dumps(events).encode()).get(timeout=30)
    finally:
        producer.close()


def hot_count(hot: HotStore, tenant: str) -> int:
    sql = "SELECT count() AS n FROM events_raw WHERE tenant = {t:String}"
    return hot.query_arrow(sql, {"t": tenant}).to_pylist()[0]["n"]


def landed(settings: Settings, tenant: str) -> int:
    return sum(pq.read_table(path, columns=["tenant"]).column("tenant").to_pylist().count(tenant)
               for path in committed_files(landing_path(settings)))


def caught_up(hot: HotStore, settings: Settings) -> bool:
    """Both queries' newest committed batches reached the topic's end offsets (read here, independently)."""
    ends = topic_end_offsets(settings.kafka_bootstrap, settings.kafka_topic)
    rows: dict[str, Any] = {r["query_name"]: r["offsets"] for r in hot.query_arrow(
        "SELECT query_name, argMax(end_offsets, finished_at) AS offsets FROM stream_progress GROUP BY query_name"
    ).to_pylist()}
    return all(not offsets_behind(parse_offsets(rows.get(q)), ends) for q in ("hot", "landing"))


def seals(hot: HotStore) -> list[datetime]:
    rows = hot.query_arrow(f"SELECT closed_through FROM {CLOSINGS_TABLE} ORDER BY recorded_at").to_pylist()
    return [r["closed_through"].replace(tzinfo=UTC) for r in rows]


def test_a_quiet_hour_closes_by_the_wall_clock_once_the_stream_caught_up_and_not_while_events_wait_in_kafka(
    stack: Stack, hot: HotStore, quiet_stream: QuietStream
) -> None:
    settings, tenant, hour = quiet_stream.settings, quiet_stream.tenant, quiet_stream.hour
    end, at = hour + timedelta(hours=1), hour + timedelta(minutes=30)
    started = time.monotonic()

    # A fresh stream counts events of an hour two hours old (its watermark starts at the first batch).
    produce(settings, tenant, at, 5)
    wait_for(lambda: hot_count(hot, tenant) == 5 and caught_up(hot, settings), 240, "the first events processed")
    print(f"stream started and caught up in {time.monotonic() - started:.0f}s")

    # The stream stops; events of the hour wait in Kafka: the hour is not closed, nothing is sealed.
    stack.down(["stream"])
    produce(settings, tenant, at + timedelta(minutes=1), 3)
    waiting = current_hour_state(hot, settings, hour)
    assert not waiting.closed, waiting.reason
    assert "has not processed everything Kafka holds" in waiting.reason and "hot " in waiting.reason
    assert seals(hot) == []

    # The stream comes back and processes them (on time: the watermark is 20 minutes into the hour).
    restarted = time.monotonic()
    stack.up(["stream"])
    wait_for(lambda: hot_count(hot, tenant) == 8 and caught_up(hot, settings), 240, "the waiting events processed")
    print(f"stream restarted and caught up in {time.monotonic() - restarted:.0f}s")
    watermarks = hot.query_arrow("SELECT max(watermark) AS w FROM stream_progress WHERE query_name = 'hot'")
    assert watermarks.to_pylist()[0]["w"].replace(tzinfo=UTC) < end, "the watermark must not pass the hour"

    # No further traffic: the wall clock closes the hour, sealed against the hot sink.
    closed = current_hour_state(hot, settings, hour)
    assert closed.closed, closed.reason
    assert "closed by the wall clock" in closed.reason
    assert seals(hot) == [end, end]

    # An event of the hour arriving now is late: landed for the batch layer, not added to the hot tier.
    late_before = late_rows_total(hot)
    produce(settings, tenant, at + timedelta(minutes=2), 2)
    wait_for(lambda: caught_up(hot, settings) and late_rows_total(hot) - late_before == 2, 120,
             "the late events processed")
    assert hot_count(hot, tenant) == 8
    wait_for(lambda: landed(settings, tenant) == 10, 60, "every event in the landing")
    assert current_hour_state(hot, settings, hour).closed
    print(f"quiet-hour test body: {time.monotonic() - started:.0f}s")
