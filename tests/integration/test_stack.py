"""The local stack really starts Kafka, MinIO and Redis, idempotently, and stops them.

It runs in its own home folder and on free ports found at run time, so it never touches a demo
stack running on the default ports. Binaries come from the shared cache (``settings.cache_dir``),
so only the very first run on a machine pays for Maven and the MinIO build.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from common.settings import Settings
from stack import lake_bucket, local_stack, s3_client, spark_kafka_jars
from tests.integration.own_services import free_pair

pytestmark = pytest.mark.integration

PYSPARK_JARS = Path(__import__("pyspark").__file__).parent / "jars"


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        kafka_bootstrap=f"localhost:{free_pair()}",
        s3_endpoint=f"http://127.0.0.1:{free_pair()}",
        redis_url=f"redis://127.0.0.1:{free_pair()}/0",
        lake_uri="s3://lake-test/lake",
        kafka_topic="events-test",
        kafka_dlq_topic="events-test.dlq",
        kafka_partitions=3,
        kafka_manage=True,
        minio_manage=True,
        redis_manage=True,
    )


def _kafka_round_trip(settings: Settings) -> None:
    value = uuid.uuid4().hex.encode()
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        producer.send(settings.kafka_topic, key=b"k", value=value, partition=1).get(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                             enable_auto_commit=False)
    try:
        for topic in (settings.kafka_topic, settings.kafka_dlq_topic):
            assert consumer.partitions_for_topic(topic) == set(range(settings.kafka_partitions))
        partition = TopicPartition(settings.kafka_topic, 1)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        seen: list[bytes] = []
        deadline = time.monotonic() + 30
        while value not in seen and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                seen.extend(r.value for r in records)
        assert value in seen
    finally:
        consumer.close()


def _minio_round_trip(settings: Settings) -> None:
    bucket = lake_bucket(settings)
    assert bucket == "lake-test"
    client = s3_client(settings)
    client.put_object(Bucket=bucket, Key="probe/hello.txt", Body=b"hello lake")
    body = client.get_object(Bucket=bucket, Key="probe/hello.txt")["Body"].read()
    assert body == b"hello lake"


def _redis_round_trip(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        assert client.ping()
        client.set("probe", "1")
        assert client.get("probe") == b"1"
    finally:
        client.close()


def test_stack_up_is_idempotent_serves_and_stops(settings: Settings) -> None:
    lines: list[str] = []
    stack = local_stack(settings, progress=lines.append)
    try:
        started = time.monotonic()
        first = {s.name: s for s in stack.up()}
        cold = time.monotonic() - started
        assert {n: s.state for n, s in first.items()} == {"kafka": "running", "minio": "running", "redis": "running"}
        assert all(s.pid for s in first.values())
        for name in first:
            assert (settings.home / "run" / f"{name}.pid").exists()
            assert (settings.home / "logs" / f"{name}.log").exists()

        lines.clear()
        started = time.monotonic()
        second = {s.name: s for s in stack.up()}
        warm = time.monotonic() - started
        assert {n: s.pid for n, s in second.items()} == {n: s.pid for n, s in first.items()}
        assert all("already running" in line for line in lines), lines
        print(f"stack up: first {cold:.1f}s, second (no-op) {warm:.1f}s")

        _kafka_round_trip(settings)
        _minio_round_trip(settings)
        _redis_round_trip(settings)
    finally:
        stopped = stack.down()
    assert [s.state for s in stopped] == ["stopped", "stopped", "stopped"]
    assert [s.state for s in local_stack(settings, progress=lines.append).status()] == ["stopped"] * 3
    assert not list((settings.home / "run").glob("*.pid"))


def test_spark_kafka_jars_add_only_what_pyspark_lacks(settings: Settings) -> None:
    jars = spark_kafka_jars(settings, progress=lambda _line: None)
    names = {j.name for j in jars}
    assert any(n.startswith("spark-sql-kafka-0-10_2.13-") for n in names)
    assert any(n.startswith("kafka-clients-") for n in names)
    assert any(n.startswith("commons-pool2-") for n in names)
    assert all(j.exists() for j in jars)
    artifact = {n.rsplit("-", 1)[0] for n in names}
    shipped = {p.name.rsplit("-", 1)[0] for p in PYSPARK_JARS.glob("*.jar")}
    assert not artifact & shipped, f"jars pyspark already ships: {artifact & shipped}"
