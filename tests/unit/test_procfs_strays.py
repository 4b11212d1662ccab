"""Pure logic of /proc parsing and of deciding which processes are strays of a stack home."""

from __future__ import annotations

from common.procfs import (
    ProcessInfo,
    ancestors,
    command_label,
    descendants,
    parse_comm,
    parse_environ,
    parse_nul_separated,
    parse_stat,
)
from stack.strays import STACK_HOME, STACK_SERVICE, home_processes, home_service, strays

HOME = "/srv/app/.lakehouse/bench"
HOMES = {HOME}


def proc(pid: int, *, ppid: int = 1, pgid: int | None = None, comm: str = "java", cmdline: tuple[str, ...] = (),
         environ: dict[str, str] | None = None, cwd: str = "/", state: str = "S") -> ProcessInfo:
    return ProcessInfo(pid, ppid, pgid if pgid is not None else pid, state, str(1000 + pid), comm, cmdline,
                       environ or {}, cwd)


def test_stat_fields_are_counted_from_the_last_parenthesis() -> None:
    # A command name may hold spaces and parentheses; fields after it: state, ppid, pgrp, ... starttime (22nd).
    text = "4242 (odd) name) S 17 4200 4200 0 -1 4194560 " + " ".join(str(n) for n in range(10, 22)) + " 987654 rest"
    fields = parse_stat(text)
    assert (fields.state, fields.ppid, fields.pgid) == ("S", 17, 4200)
    assert fields.start_ticks == "987654"
    assert parse_comm(text) == "odd) name"


def test_nul_separated_command_lines_and_environments() -> None:
    assert parse_nul_separated(b"java\0-cp\0a:b\0kafka.Kafka\0") == ("java", "-cp", "a:b", "kafka.Kafka")
    assert parse_environ(b"A=1\0EMPTY=\0B=x=y\0junk\0") == {"A": "1", "EMPTY": "", "B": "x=y"}


def test_command_labels_name_the_spark_app_the_java_main_class_or_the_python_module() -> None:
    assert command_label(("/usr/bin/java", "-cp", "x", "org.apache.spark.deploy.SparkSubmit", "--conf",
                          "spark.app.name=lakehouse-stream", "pyspark-shell")) == "lakehouse-stream"
    broker = ("/usr/bin/java", "-Xmx1g", "-cp", "/a:/b", "kafka.Kafka", "server.properties")
    assert command_label(broker) == "kafka.Kafka"
    assert command_label(("/venv/bin/python", "-m", "cli.main", "stream")) == "cli.main stream"


def test_a_tagged_process_belongs_to_its_home_and_service_whatever_its_program() -> None:
    tagged = proc(10, comm="python3", environ={STACK_HOME: HOME, STACK_SERVICE: "stream"})
    other_home = proc(11, comm="python3", environ={STACK_HOME: "/elsewhere", STACK_SERVICE: "stream"})
    assert home_service(tagged, HOMES) == "stream"
    assert home_service(other_home, HOMES) is None


def test_untagged_servers_belong_by_lakehouse_home_resolved_against_their_folder_or_by_command_line() -> None:
    leaked_jvm = proc(20, cmdline=("/usr/bin/java", "--conf", "spark.app.name=lakehouse-stream"),
                      environ={"LAKEHOUSE_HOME": ".lakehouse/bench"}, cwd="/srv/app")
    same_name_other_folder = proc(21, cmdline=("/usr/bin/java",), environ={"LAKEHOUSE_HOME": ".lakehouse/bench"},
                                  cwd="/home/someone")
    redis = proc(22, comm="redis-server", cmdline=("redis-server", f"{HOME}/redis/redis.conf"))
    broker = proc(23, cmdline=("/usr/bin/java", "-cp", "/cache/kafka/*", "kafka.Kafka",
                               f"{HOME}/kafka/server.properties"))
    minio = proc(24, comm="minio", cmdline=("/cache/minio", "server", "--address=127.0.0.1:9000", f"{HOME}/minio"))
    prefix_only = proc(25, comm="minio", cmdline=("/cache/minio", "server", f"{HOME}-old/minio"))
    assert home_service(leaked_jvm, HOMES) == "stream"
    assert home_service(same_name_other_folder, HOMES) is None
    assert home_service(redis, HOMES) == "redis"
    assert home_service(broker, HOMES) == "kafka"
    assert home_service(minio, HOMES) == "minio"
    assert home_service(prefix_only, HOMES) is None


def test_a_shell_or_a_log_viewer_that_mentions_the_home_is_not_the_stacks_to_stop() -> None:
    tail = proc(30, comm="tail", cmdline=("tail", "-f", f"{HOME}/logs/stream.log"), environ={"LAKEHOUSE_HOME": HOME})
    shell = proc(31, comm="bash", cmdline=("bash",), environ={"LAKEHOUSE_HOME": HOME})
    assert home_service(tail, HOMES) is None
    assert home_service(shell, HOMES) is None


def test_strays_are_home_processes_outside_running_services_and_their_descendants() -> None:
    tag = {STACK_HOME: HOME, STACK_SERVICE: "stream"}
    table = [
        proc(100, comm="python3", environ=tag),                        # running stream's driver (group 100)
        proc(101, ppid=100, pgid=100, environ=tag),                     # its JVM
        proc(102, ppid=101, pgid=102, comm="python3", environ=tag),     # a worker that left the group
        proc(200, comm="java", environ=tag),                            # JVM of an earlier, killed driver
        proc(201, comm="python3", environ=tag, state="Z"),              # a zombie holds nothing
        proc(300, comm="java", pgid=999, environ={"LAKEHOUSE_HOME": HOME}),  # the caller's own Spark
        proc(400, comm="java", environ={"LAKEHOUSE_HOME": "/other"}),   # another home
    ]
    found = strays(table, HOMES, {100}, exclude_pids={1}, exclude_pgid=999)
    assert [(hp.process.pid, hp.service) for hp in found] == [(200, "stream")]
    everything = home_processes(table, HOMES, exclude_pids={1}, exclude_pgid=999)
    assert [hp.process.pid for hp in everything] == [100, 101, 102, 200]


def test_process_tree_walks() -> None:
    table = [proc(1, ppid=0), proc(10, ppid=1), proc(11, ppid=10), proc(12, ppid=11), proc(20, ppid=1)]
    assert {p.pid for p in descendants({10}, table)} == {11, 12}
    assert ancestors(12, table) == {11, 10, 1}
