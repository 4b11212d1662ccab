"""The local Kafka broker: Apache Kafka in KRaft mode, broker and controller in one small JVM.

It runs from the jars Maven resolves (no Kafka distribution, no Docker), with the same main classes
Kafka's own scripts call. The controller listens on the bootstrap port + 1.

With ``LAKEHOUSE_KAFKA_BROKERS=3`` the stack starts a KRaft cluster as in production instead: three
JVMs (services ``kafka-1``..``kafka-3``), each broker and controller, a static quorum of the three
controllers, replication factor 3 and ``min.insync.replicas=2``, so that with ``acks=all`` one broker
can die without losing an acknowledged event and producers keep going.
"""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

from common.settings import Settings

from .maven import kafka_broker_libs, pom_property
from .net import bootstrap_addresses, port_open
from .services import ProcessService, process_service
from .tools import Progress, StackError, require_tool, run_logged

LOG4J2_CONFIG = Path(__file__).resolve().parent / "conf" / "kafka-log4j2.properties"
JVM_OPTIONS = [
    "-Xmx512m",
    "-Xms128m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
]


def kafka_version() -> str:
    """The broker version, read from the pom so it is pinned in one place."""
    return pom_property("kafka-broker", "kafka.version")


def server_properties(settings: Settings) -> str:
    """A single-node KRaft configuration for ``settings.kafka_bootstrap``.

    Replication factors are 1 because there is one broker; the initial rebalance delay is 0 so
    consumers in tests get their partitions immediately instead of after 3 s.
    """
    host, port = bootstrap_addresses(settings.kafka_bootstrap)[0]
    controller = f"{host}:{port + 1}"
    data = settings.home / "kafka" / "data"
    return "\n".join(
        [
            "# Written by `lakehouse stack up` from the LAKEHOUSE_* settings; edits are overwritten.",
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers={controller}",
            f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{controller}",
            f"advertised.listeners=PLAINTEXT://{host}:{port},CONTROLLER://{controller}",
            "inter.broker.listener.name=PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data}",
            f"num.partitions={settings.kafka_partitions}",
            "default.replication.factor=1",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.hours=168",
            "",
        ]
    )


CLUSTER_SIZE = 3


def cluster_addresses(settings: Settings) -> list[tuple[str, int]]:
    """The brokers' (host, port) of a cluster: as listed in ``kafka_bootstrap``, or from its first
    address on (each broker takes two ports: its listener and, one above, its controller)."""
    addresses = bootstrap_addresses(settings.kafka_bootstrap)
    if len(addresses) >= CLUSTER_SIZE:
        return addresses[:CLUSTER_SIZE]
    host, port = addresses[0]
    return [(host, port + 2 * i) for i in range(CLUSTER_SIZE)]


def cluster_properties(settings: Settings, node_id: int) -> str:
    """KRaft configuration of broker ``node_id`` (1-based) of the local three-broker cluster."""
    addresses = cluster_addresses(settings)
    host, port = addresses[node_id - 1]
    voters = ",".join(f"{i}@{h}:{p + 1}" for i, (h, p) in enumerate(addresses, start=1))
    data = settings.home / f"kafka-{node_id}" / "data"
    return "\n".join(
        [
            "# Written by `lakehouse stack up` from the LAKEHOUSE_* settings; edits are overwritten.",
            "process.roles=broker,controller",
            f"node.id={node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{port + 1}",
            f"advertised.listeners=PLAINTEXT://{host}:{port}",
            "inter.broker.listener.name=PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data}",
            f"num.partitions={settings.kafka_partitions}",
            f"default.replication.factor={CLUSTER_SIZE}",
            "min.insync.replicas=2",
            f"offsets.topic.replication.factor={CLUSTER_SIZE}",
            f"transaction.state.log.replication.factor={CLUSTER_SIZE}",
            "transaction.state.log.min.isr=2",
            f"share.coordinator.state.topic.replication.factor={CLUSTER_SIZE}",
            "share.coordinator.state.topic.min.isr=2",
            "unclean.leader.election.enable=false",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.hours=168",
            "",
        ]
    )


def _java_command(settings: Settings, libs: Path, main: str, *args: str) -> list[str]:
    java = require_tool("java", "to run the Kafka broker")
    return [
        java,
        *JVM_OPTIONS,
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        f"-Dkafka.logs.dir={settings.logs_dir}",
        "-cp",
        f"{libs}/*",
        main,
        *args,
    ]


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (Kafka's Uuid format).

    Like Kafka's own ``Uuid.randomUuid`` it never starts with "-", which the format tool's argument
    parser would take for an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


# The broker stamps each record of the events topic with its own clock: the stream judges an event's
# timestamp against the record's Kafka timestamp, which a producer with a wrong clock must not set.
TOPIC_CONFIGS = {"message.timestamp.type": "LogAppendTime"}


def ensure_topics(settings: Settings, timeout: float = 60.0, progress: Progress = print) -> None:
    """Create the events and dead-letter topics when missing.

    Only called once the port is open (kafka-python's admin client blocks ~30 s when no broker
    answers). The broker can accept connections slightly before it serves requests, and a cluster that is
    still forming may leave a topic uncreated (seen once with three brokers), so this retries until
    ``timeout``. The replication factor is left to the broker's default, so the same call is right for the
    local single node and for an external cluster.
    """
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    wanted = [settings.kafka_topic, settings.kafka_dlq_topic]
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=settings.kafka_bootstrap,
                client_id="lakehouse-stack",
                bootstrap_timeout_ms=5000,
                request_timeout_ms=10000,
            )
        except KafkaError as exc:
            last_error = exc
            time.sleep(0.5)
            continue
        try:
            missing = [t for t in wanted if t not in set(admin.list_topics())]
            if missing:
                admin.create_topics(
                    {t: {"num_partitions": settings.kafka_partitions, "replication_factor": -1,
                         **({"configs": TOPIC_CONFIGS} if t == settings.kafka_topic else {})} for t in missing},
                    timeout_ms=10000,
                    raise_errors=False,
                    wait_for_metadata=True,
                )
                still = [t for t in wanted if t not in set(admin.list_topics())]
                if still:  # a cluster still forming (brokers registering, metadata spreading): ask again
                    last_error = StackError(f"topics {still} missing after the create request")
                    time.sleep(1.0)
                    continue
                progress(f"kafka: created topics {', '.join(missing)} ({settings.kafka_partitions} partitions)")
            return
        except KafkaError as exc:
            last_error = exc
            time.sleep(0.5)
        finally:
            admin.close()
    raise StackError(
        f"kafka: the broker at {settings.kafka_bootstrap} accepts connections but did not create the topics "
        f"{', '.join(wanted)} within {timeout:.0f}s ({last_error!r}). See {settings.logs_dir / 'kafka.log'}."
    )


def kafka_service(settings: Settings, progress: Progress = print) -> ProcessService:
    """The Kafka `ProcessService` (managed or external according to ``settings.kafka_manage``)."""
    addresses = bootstrap_addresses(settings.kafka_bootstrap)
    host, port = addresses[0]
    home = settings.home / "kafka"
    data = home / "data"
    config = home / "server.properties"
    log_file = settings.logs_dir / "kafka.log"
    state: dict[str, Path] = {}

    def ready() -> bool:
        if settings.kafka_manage:
            return port_open(host, port)
        return any(port_open(h, p) for h, p in addresses)

    def prepare() -> None:
        libs = kafka_broker_libs(settings, progress)
        state["libs"] = libs
        home.mkdir(parents=True, exist_ok=True)
        config.write_text(server_properties(settings))
        if not (data / "meta.properties").exists():
            progress(f"kafka: formatting storage in {data} (first start only)…")
            cmd = _java_command(
                settings, libs, "kafka.tools.StorageTool", "format", "--standalone",
                "-t", _cluster_id(), "-c", str(config),
            )
            run_logged(cmd, log_file=log_file, progress=progress, label="kafka")

    def command() -> list[str]:
        return _java_command(settings, state["libs"], "kafka.Kafka", str(config))

    return process_service(
        settings.home,
        "kafka",
        command,
        ready,
        settings.kafka_bootstrap,
        managed=settings.kafka_manage,
        manage_setting="LAKEHOUSE_KAFKA_MANAGE",
        ports=[(host, port), (host, port + 1)],
        prepare=prepare,
        after_ready=lambda: ensure_topics(settings, progress=progress),
        start_timeout=120.0,
        stop_timeout=30.0,
        hint=f"look at {log_file}; if the data folder is damaged, `lakehouse stack down` and delete {data} "
        "(this loses the topics' data).",
    )


def _cluster_id_file(settings: Settings) -> Path:
    return settings.home / "kafka-cluster" / "cluster.id"


def shared_cluster_id(settings: Settings) -> str:
    """One cluster id for the three brokers' storage, written on the first start and kept."""
    path = _cluster_id_file(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_cluster_id())
    return path.read_text().strip()


def wait_for_listeners(settings: Settings, timeout: float) -> None:
    """Until every broker of the cluster answers on its client listener (all have registered)."""
    deadline = time.monotonic() + timeout
    waiting = cluster_addresses(settings)
    while waiting:
        waiting = [(h, p) for h, p in waiting if not port_open(h, p)]
        if waiting and time.monotonic() > deadline:
            raise StackError(f"kafka: brokers {', '.join(f'{h}:{p}' for h, p in waiting)} did not open their "
                             f"listener within {timeout:.0f}s; look at {settings.logs_dir}/kafka-*.log")
        if waiting:
            time.sleep(0.5)


def cluster_broker_service(settings: Settings, node_id: int, progress: Progress = print) -> ProcessService:
    """Broker ``node_id`` of the local three-broker KRaft cluster, as its own service ``kafka-<id>``.

    Each broker is its own process group, so a test (or an operator) can kill or restart one. A
    broker opens its client listener only once it has registered with a quorum of controllers (two of
    three), so brokers 1 and 2 count as ready when their controller listener answers (the quorum's
    voting needs it, so it opens first); waiting for broker 1's client port before starting broker 2
    would wait for a quorum that cannot form, and the broker gives up after a minute. The last one is
    ready when its client listener answers; it then waits for every broker's and creates the topics.
    """
    host, port = cluster_addresses(settings)[node_id - 1]
    name = f"kafka-{node_id}"
    home = settings.home / name
    data = home / "data"
    config = home / "server.properties"
    log_file = settings.logs_dir / f"{name}.log"
    state: dict[str, Path] = {}

    def prepare() -> None:
        libs = kafka_broker_libs(settings, progress)
        state["libs"] = libs
        home.mkdir(parents=True, exist_ok=True)
        config.write_text(cluster_properties(settings, node_id))
        if not (data / "meta.properties").exists():
            progress(f"{name}: formatting storage in {data} (first start only)…")
            cmd = _java_command(settings, libs, "kafka.tools.StorageTool", "format",
                                "-t", shared_cluster_id(settings), "-c", str(config))
            run_logged(cmd, log_file=log_file, progress=progress, label=name)

    def command() -> list[str]:
        return _java_command(settings, state["libs"], "kafka.Kafka", str(config))

    def cluster_ready() -> None:
        wait_for_listeners(settings, timeout=120.0)
        ensure_topics(settings, timeout=120.0, progress=progress)

    last = node_id == CLUSTER_SIZE
    return process_service(
        settings.home,
        name,
        command,
        (lambda: port_open(host, port)) if last else (lambda: port_open(host, port + 1)),
        f"{host}:{port}",
        ports=[(host, port), (host, port + 1)],
        prepare=prepare,
        after_ready=cluster_ready if last else None,
        start_timeout=120.0,
        stop_timeout=30.0,
        hint=f"look at {log_file}; if its data folder is damaged, `lakehouse stack down` and delete "
        f"{settings.home}/kafka-*/data and {_cluster_id_file(settings)} (this loses the topics' data).",
    )


def kafka_services(settings: Settings, progress: Progress = print) -> list[ProcessService]:
    """The Kafka service(s) of the stack: the single broker, or the three of a cluster (``kafka_brokers``)."""
    if settings.kafka_brokers == CLUSTER_SIZE and settings.kafka_manage:
        return [cluster_broker_service(settings, i, progress) for i in range(1, CLUSTER_SIZE + 1)]
    return [kafka_service(settings, progress)]
