"""What Linux's /proc says about processes: enough to find every process of a group or a stack home.

A service is more than the process we started: a JVM under a Python driver, Python workers under
a JVM, a watchdog beside them. Stopping it properly, and finding what a crash left behind, needs
the whole picture — process group, parent, start time, command line and environment — which only
/proc gives without extra dependencies. The parsing functions are pure so they can be tested on
literal text; the readers return None or skip what vanished or is not ours to read.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc's unit of CPU and start times


@dataclass(frozen=True)
class ProcessInfo:
    """One process as /proc showed it at one moment."""

    pid: int
    ppid: int
    pgid: int
    state: str
    start_ticks: str
    comm: str
    cmdline: tuple[str, ...] = ()
    environ: dict[str, str] | None = field(default=None, compare=False)  # None: not readable (not ours)
    cwd: str | None = None

    @property
    def gone(self) -> bool:
        """A zombie or dead entry: it holds no memory, CPU or ports any more."""
        return self.state in ("Z", "X", "x")

    def describe(self) -> str:
        """``pid 123 java (lakehouse-stream)``: what a person needs to recognise the process."""
        return f"pid {self.pid} {self.comm}" + (f" ({label})" if (label := command_label(self.cmdline)) else "")


@dataclass(frozen=True)
class StatFields:
    state: str
    ppid: int
    pgid: int
    start_ticks: str
    nice: int
    cpu_ticks: int = 0  # user + system time so far, its threads included (not its children's)


def parse_stat(text: str) -> StatFields:
    """Fields of ``/proc/<pid>/stat``; the command name may contain spaces and parentheses, so the
    fields are counted from the last ``)``."""
    rest = text[text.rfind(")") + 2 :].split()
    return StatFields(state=rest[0], ppid=int(rest[1]), pgid=int(rest[2]), start_ticks=rest[19], nice=int(rest[16]),
                      cpu_ticks=int(rest[11]) + int(rest[12]))


def parse_comm(text: str) -> str:
    """The command name between the first ``(`` and the last ``)`` of ``/proc/<pid>/stat``."""
    return text[text.find("(") + 1 : text.rfind(")")]


def parse_nul_separated(raw: bytes) -> tuple[str, ...]:
    """``/proc/<pid>/cmdline`` and ``environ`` are NUL-separated, usually NUL-terminated."""
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def parse_environ(raw: bytes) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in parse_nul_separated(raw) if "=" in item)


def command_label(cmdline: tuple[str, ...]) -> str:
    """A short reminder of what a command runs: a Spark app's name, a Java main class, a Python
    module, or else the program's arguments (cut to 80 characters)."""
    for arg in cmdline:
        if arg.startswith("spark.app.name="):
            return arg.partition("=")[2]
    if cmdline and Path(cmdline[0]).name == "java":
        skip = False
        for arg in cmdline[1:]:
            if skip:
                skip = False
            elif arg in ("-cp", "-classpath", "--class-path"):
                skip = True
            elif not arg.startswith("-"):
                return arg
    if "-m" in cmdline[:-1]:
        return " ".join(cmdline[cmdline.index("-m") + 1 :])[:80]
    return " ".join(cmdline[1:])[:80]


def read_process(pid: int, *, details: bool = True) -> ProcessInfo | None:
    """The process ``pid`` now, or None when it is gone; ``details`` adds command line, environment
    and working folder (the environment only for processes of our own user)."""
    base = PROC / str(pid)
    try:
        stat_text = (base / "stat").read_text()
    except OSError:  # gone (FileNotFoundError, ProcessLookupError) or not readable
        return None
    stat = parse_stat(stat_text)
    cmdline: tuple[str, ...] = ()
    environ: dict[str, str] | None = None
    cwd: str | None = None
    if details:
        with contextlib.suppress(OSError):
            cmdline = parse_nul_separated((base / "cmdline").read_bytes())
        with contextlib.suppress(OSError):
            environ = parse_environ((base / "environ").read_bytes())
        with contextlib.suppress(OSError):
            cwd = os.readlink(base / "cwd")
    return ProcessInfo(pid, stat.ppid, stat.pgid, stat.state, stat.start_ticks, parse_comm(stat_text),
                       cmdline, environ, cwd)


def pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir(PROC) if name.isdigit()]
    except FileNotFoundError:
        return []


def processes(*, details: bool = True) -> list[ProcessInfo]:
    """Every process /proc lists (empty where there is no /proc), zombies included."""
    found = (read_process(pid, details=details) for pid in pids())
    return [info for info in found if info is not None]


def available() -> bool:
    """True on Linux with /proc mounted; elsewhere the callers fall back to plain signals."""
    return (PROC / "self" / "stat").exists()


def group_members(pgid: int) -> list[ProcessInfo]:
    """Live (not zombie) processes of the process group ``pgid``; a group outlives its leader."""
    return [p for p in processes(details=False) if p.pgid == pgid and not p.gone]


def descendants(root_pids: set[int], table: list[ProcessInfo]) -> list[ProcessInfo]:
    """Processes whose parent chain reaches one of ``root_pids`` (the roots themselves excluded)."""
    children: dict[int, list[ProcessInfo]] = {}
    for info in table:
        children.setdefault(info.ppid, []).append(info)
    found: list[ProcessInfo] = []
    todo = list(root_pids)
    seen = set(root_pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child.pid not in seen:
                seen.add(child.pid)
                found.append(child)
                todo.append(child.pid)
    return found


def ancestors(pid: int, table: list[ProcessInfo]) -> set[int]:
    """``pid``'s parent, its parent, and so on up to init."""
    by_pid = {info.pid: info for info in table}
    found: set[int] = set()
    current = by_pid.get(pid)
    while current is not None and current.ppid not in found and current.ppid > 0:
        found.add(current.ppid)
        current = by_pid.get(current.ppid)
    return found


def parse_status_rss_kib(text: str) -> int | None:
    """``VmRSS`` of ``/proc/<pid>/status`` in KiB (None for a kernel thread or a zombie, which have none)."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def resident_kib(pid: int) -> int | None:
    """The resident memory of ``pid`` now, in KiB; None when it is gone or has none."""
    try:
        return parse_status_rss_kib((PROC / str(pid) / "status").read_text())
    except (OSError, ValueError, IndexError):
        return None


def memory_pages(pid: int) -> tuple[int, ...] | None:
    """``/proc/<pid>/statm`` (size, resident, shared, text, lib, data, dt in pages); None when gone. A child
    that shares its parent's memory (vfork, posix_spawn before exec, as a JVM starts a command) shows the
    very same figures as its parent, which is how a reader can avoid counting that memory twice."""
    try:
        return tuple(int(x) for x in (PROC / str(pid) / "statm").read_text().split())
    except (OSError, ValueError):
        return None


def cpu_seconds(pid: int) -> float | None:
    """The CPU time ``pid`` has used so far (user + system, its threads included; not its children's); None when
    it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return parse_stat(text).cpu_ticks / CLOCK_TICKS


def started_seconds(start_ticks: str) -> float:
    """A process's start (``ProcessInfo.start_ticks``) in seconds since boot, comparable with ``uptime_seconds``."""
    return int(start_ticks) / CLOCK_TICKS


def uptime_seconds() -> float:
    """Seconds since boot (``/proc/uptime``): the clock of ``started_seconds``."""
    return float((PROC / "uptime").read_text().split()[0])


def nice_value(pid: int, thread: int | None = None) -> int | None:
    """The nice value of ``pid``'s main thread, or of its ``thread`` (a thread has its own); None when it is gone."""
    try:
        text = (PROC / str(pid) / ("stat" if thread is None else f"task/{thread}/stat")).read_text()
    except OSError:
        return None
    return parse_stat(text).nice


def autogroup_nice(pid: int) -> int | None:
    """The nice value of ``pid``'s autogroup (its session's share of the CPU against other sessions); None without
    autogroups or when it is gone."""
    try:
        return int((PROC / str(pid) / "autogroup").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class Mapping:
    """One mapping of ``/proc/<pid>/smaps``: where it starts, its size and resident part (KiB), and what it maps."""

    start: int
    size_kib: int
    rss_kib: int
    perms: str
    path: str  # "" for anonymous memory; "[heap]", "[stack]", … for the kernel's named ones


def parse_smaps(text: str) -> list[Mapping]:
    """The mappings of ``/proc/<pid>/smaps`` with their ``Size`` and ``Rss``."""
    found: list[Mapping] = []
    head: list[str] | None = None
    size = rss = 0

    def close() -> None:
        if head is not None:
            found.append(Mapping(int(head[0].split("-")[0], 16), size, rss, head[1],
                                 head[5] if len(head) > 5 else ""))

    for line in text.splitlines():
        first = line.split(None, 1)[0] if line else ""
        if "-" in first and not first.endswith(":"):
            close()
            head, size, rss = line.split(None, 5), 0, 0
        elif first == "Size:":
            size = int(line.split()[1])
        elif first == "Rss:":
            rss = int(line.split()[1])
    close()
    return found


def mappings(pid: int) -> list[Mapping] | None:
    """``pid``'s mappings now; None when it is gone or not ours to read."""
    try:
        return parse_smaps((PROC / str(pid) / "smaps").read_text())
    except OSError:
        return None
