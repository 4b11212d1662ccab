"""Which processes belong to a stack home, and which of them belong to no running service.

A process the stack did not stop — a Spark JVM whose driver was killed, a broker whose pid file was
deleted, anything left by a crashed test session — keeps ports, memory and even Kafka consumers.
`status` lists such strays and `down` stops them. A process belongs to a home when:

* the stack started it or one of its ancestors: every service is spawned with ``LAKEHOUSE_STACK_HOME``
  (and ``LAKEHOUSE_STACK_SERVICE``) in its environment, which children inherit;
* or it is a Java, MinIO or Redis server process whose ``LAKEHOUSE_HOME`` (resolved against its
  working folder) or whose command line names the home — processes started before the stack tagged
  its services, or by hand. Other programs that merely mention the home (a shell, ``tail -f`` on a
  log) are not the stack's to stop.

The caller's own process group and its ancestors are never strays: a test session's in-process
Spark, or the shell that exported ``LAKEHOUSE_HOME``, is not a leftover of the stack.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from common import procfs

STACK_HOME = "LAKEHOUSE_STACK_HOME"
STACK_SERVICE = "LAKEHOUSE_STACK_SERVICE"
SERVER_PROGRAMS = ("java", "minio", "redis-server")


def home_key(home: Path) -> str:
    """The one spelling of a home that tags and comparisons use."""
    return str(home.resolve())


def service_env(home: Path, service: str) -> dict[str, str]:
    """Environment tags of a process the stack starts for ``service``."""
    return {STACK_HOME: home_key(home), STACK_SERVICE: service}


@dataclass(frozen=True)
class HomeProcess:
    """A process of a stack home, with the service it was started for ("" when unknown)."""

    process: procfs.ProcessInfo
    service: str

    def __str__(self) -> str:
        return f"{self.process.describe()}, service {self.service or 'unknown'}"


def _mentions(arg: str, homes: set[str]) -> bool:
    for piece in arg.replace(":", "=").replace(",", "=").split("="):
        piece = piece.rstrip("/")
        if piece in homes or any(piece.startswith(home + "/") for home in homes):
            return True
    return False


def guess_service(info: procfs.ProcessInfo) -> str:
    """Which service an untagged server process would be: by its program and main class."""
    if info.comm == "minio":
        return "minio"
    if info.comm == "redis-server":
        return "redis"
    if "kafka.Kafka" in info.cmdline:
        return "kafka"
    if "spark.app.name=lakehouse-stream" in info.cmdline:
        return "stream"
    return ""


def home_service(info: procfs.ProcessInfo, homes: set[str]) -> str | None:
    """The service of the home (spelled as ``homes``) that ``info`` belongs to — "" when it cannot be
    told — or None when ``info`` does not belong to that home."""
    env = info.environ or {}
    if env.get(STACK_HOME) in homes:
        return env.get(STACK_SERVICE, "")
    program = Path(info.cmdline[0]).name if info.cmdline else info.comm
    if program not in SERVER_PROGRAMS and info.comm not in SERVER_PROGRAMS:
        return None
    env_home = env.get("LAKEHOUSE_HOME")
    if env_home and os.path.normpath(os.path.join(info.cwd or "/", env_home)) in homes:
        return guess_service(info)
    if any(_mentions(arg, homes) for arg in info.cmdline[1:]):
        return guess_service(info)
    return None


def home_processes(
    table: Iterable[procfs.ProcessInfo], homes: set[str], *, exclude_pids: set[int], exclude_pgid: int
) -> list[HomeProcess]:
    """Every live process of the home in ``table`` except the caller's own group and ``exclude_pids``."""
    found = []
    for info in table:
        if info.gone or info.pid in exclude_pids or info.pgid == exclude_pgid:
            continue
        service = home_service(info, homes)
        if service is not None:
            found.append(HomeProcess(info, service))
    return found


def strays(
    table: list[procfs.ProcessInfo], homes: set[str], service_pgids: set[int], *, exclude_pids: set[int],
    exclude_pgid: int,
) -> list[HomeProcess]:
    """Processes of the home outside every running service's group and that group's descendants."""
    members = {p.pid for p in table if p.pgid in service_pgids}
    owned = members | {p.pid for p in procfs.descendants(members, table)}
    return [hp for hp in home_processes(table, homes, exclude_pids=exclude_pids, exclude_pgid=exclude_pgid)
            if hp.process.pid not in owned and hp.process.pgid not in service_pgids]


def home_spellings(home: Path) -> set[str]:
    """The home as the stack tags it and as command lines may spell it (absolute, symlinks kept)."""
    return {home_key(home), os.path.normpath(str(home.absolute()))}


def own_exclusions(table: list[procfs.ProcessInfo]) -> tuple[set[int], int]:
    """This process and its ancestors, and this process's group: never strays of anything."""
    me = os.getpid()
    return {me} | procfs.ancestors(me, table), os.getpgrp()
