"""The local three-broker KRaft cluster's configuration (``LAKEHOUSE_KAFKA_BROKERS=3``), without starting it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from common.settings import Settings
from stack.kafka import cluster_addresses, cluster_properties, kafka_services


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_one_broker_is_the_default_and_keeps_its_service_name(tmp_path: Path) -> None:
    assert [s.name for s in kafka_services(Settings(home=tmp_path))] == ["kafka"]


def test_three_brokers_form_one_quorum_with_replication_three_and_two_in_sync(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_brokers=3, kafka_bootstrap="localhost:19092")
    assert cluster_addresses(settings) == [("localhost", 19092), ("localhost", 19094), ("localhost", 19096)]
    assert [s.name for s in kafka_services(settings)] == ["kafka-1", "kafka-2", "kafka-3"]
    configs = [props(cluster_properties(settings, i)) for i in (1, 2, 3)]
    assert {c["controller.quorum.voters"] for c in configs} == {
        "1@localhost:19093,2@localhost:19095,3@localhost:19097"}
    assert [c["node.id"] for c in configs] == ["1", "2", "3"]
    assert configs[1]["listeners"] == "PLAINTEXT://localhost:19094,CONTROLLER://localhost:19095"
    assert len({c["log.dirs"] for c in configs}) == 3
    for c in configs:
        assert (c["default.replication.factor"], c["min.insync.replicas"]) == ("3", "2")
        assert c["offsets.topic.replication.factor"] == "3" and c["unclean.leader.election.enable"] == "false"


def test_a_listed_bootstrap_names_the_brokers(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_brokers=3, kafka_bootstrap="127.0.0.1:4000,127.0.0.1:4010,127.0.0.1:4020")
    assert [p for _, p in cluster_addresses(settings)] == [4000, 4010, 4020]


def test_the_cluster_is_chosen_from_the_environment_and_other_counts_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_KAFKA_BROKERS", "3")  # as the stack's processes and the tests set it: a string
    assert Settings(home=tmp_path).kafka_brokers == 3
    monkeypatch.setenv("LAKEHOUSE_KAFKA_BROKERS", "2")
    with pytest.raises(ValidationError, match="must be 1 .* or 3"):
        Settings(home=tmp_path)
