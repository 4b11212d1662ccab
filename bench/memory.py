"""Resident memory of every process a benchmark runs: the stack's services and the benchmark itself.

A process's memory matters as much as its speed on a small box: a hot node that grows without bound
is an outage later. ``MemorySampler`` reads ``VmRSS`` from /proc every ``interval_s`` in a background
thread and keeps, per process, the peak and the last value; per service (the stack's tags: api, stream,
kafka, minio, redis; ``bench`` for the benchmark's own process and its children, e.g. an in-process
Spark JVM) it keeps the peak and the last value of the sum, since a service is several processes (the
stream is a Python driver, its JVM and Spark's Python workers). Every benchmark writes ``report()``
into its results file under ``memory``. Sampling costs a /proc scan (a few ms) per interval.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import procfs
from stack import process
from stack import strays as home_scan

BENCH = "bench"
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass
class _Seen:
    service: str
    label: str
    peak_kib: int = 0
    end_kib: int = 0
    last_sample: int = -1
    cpu_from: float = 0.0  # its CPU seconds when first seen (0 for a process started after the sampler)
    cpu_to: float = 0.0  # and at its last sample


def _mib(kib: int) -> float:
    return round(kib / 1024, 1)


class MemorySampler:
    """Samples the resident memory of the processes of ``home`` (a stack home; None: none) and of this
    process and its descendants. Use as a context manager, or ``start``/``stop``; ``sample`` by hand works too."""

    def __init__(self, home: Path | None = None, interval_s: float = 1.0) -> None:
        self.home = home
        self.interval_s = interval_s
        self.samples = 0
        self.series: dict[str, list[tuple[float, int]]] = {}  # per service: (seconds since start, KiB summed)
        self.anon_series: dict[str, list[tuple[float, int]]] = {}  # the same, anonymous pages only
        self._seen: dict[tuple[int, str], _Seen] = {}
        self._service_peak: dict[str, int] = {}
        self._started = time.monotonic()
        self._started_uptime = procfs.uptime_seconds()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _members(self, table: list[procfs.ProcessInfo]) -> list[tuple[str, procfs.ProcessInfo]]:
        found: list[tuple[str, procfs.ProcessInfo]] = []
        taken: set[int] = set()
        if self.home is not None:
            # Each service's process group, from its pid file, first: Redis rewrites its command line and
            # environment (its process title), so only the group tells it is this home's (and not the
            # benchmark's child, which every service started by the benchmark also is).
            for pid_file in sorted((self.home / "run").glob("*.pid")):
                record = process.read_pid(pid_file)
                if record is None:
                    continue
                group = [p for p in table if p.pgid == record.pid and not p.gone and p.pid not in taken]
                found += [(pid_file.stem, p) for p in group]
                taken.update(p.pid for p in group)
        me = os.getpid()
        own = [p for p in [*(p for p in table if p.pid == me), *procfs.descendants({me}, table)]
               if not p.gone and p.pid not in taken]
        # A service the benchmark started itself (MinIO of a temporary home) carries the stack's tag.
        found += [((p.environ or {}).get(home_scan.STACK_SERVICE) or BENCH, p) for p in own]
        taken.update(p.pid for p in own)
        if self.home is not None:
            exclude_pids, exclude_pgid = home_scan.own_exclusions(table)
            found += [(hp.service or "unknown", hp.process) for hp in home_scan.home_processes(
                table, home_scan.home_spellings(self.home), exclude_pids=exclude_pids | taken,
                exclude_pgid=exclude_pgid)]
        return found

    def sample(self) -> dict[str, int]:
        """Read every process's RSS once; returns KiB per service."""
        table = procfs.processes()
        totals: dict[str, int] = {}
        anon: dict[str, int] = {}
        with self._lock:
            index = self.samples
            members = self._members(table)
            statm = {info.pid: procfs.memory_pages(info.pid) for _, info in members}
            cpu = {info.pid: procfs.cpu_seconds(info.pid) for _, info in members}
            for service, info in members:
                pages = statm[info.pid]
                if pages is None or (pages == statm.get(info.ppid) and pages[1] > 0):
                    continue  # gone, or a child sharing its parent's memory until it execs: counted once
                kib = pages[1] * PAGE_KIB
                seen = self._seen.get((info.pid, info.start_ticks))
                if seen is None:  # CPU counted from now, or from its start when it started after the sampler
                    after = procfs.started_seconds(info.start_ticks) >= self._started_uptime
                    seen = self._seen[(info.pid, info.start_ticks)] = _Seen(
                        service, info.describe(), cpu_from=0.0 if after else cpu[info.pid] or 0.0)
                seen.cpu_to = cpu[info.pid] or seen.cpu_to
                seen.label = info.describe()  # a launcher that exec'd (bash → java) is named as it is now
                seen.peak_kib = max(seen.peak_kib, kib)
                seen.end_kib, seen.last_sample = kib, index
                totals[service] = totals.get(service, 0) + kib
                anon[service] = anon.get(service, 0) + (pages[1] - pages[2]) * PAGE_KIB
            at = round(time.monotonic() - self._started, 1)
            for service, kib in totals.items():
                self._service_peak[service] = max(self._service_peak.get(service, 0), kib)
                self.series.setdefault(service, []).append((at, kib))
                self.anon_series.setdefault(service, []).append((at, anon[service]))
            self.samples += 1
        return totals

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> MemorySampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sample()

    def __enter__(self) -> MemorySampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def report(self) -> dict[str, Any]:
        """Per service: peak and end of the summed RSS (MiB); per process: its own peak and end
        (``running_at_end`` false for one that exited during the run, whose end is its last sample)."""
        with self._lock:
            last = self.samples - 1
            services = {
                service: {"peak_mib": _mib(peak),
                          "end_mib": _mib(self.series[service][-1][1]) if self._alive_at(service, last) else 0.0}
                for service, peak in sorted(self._service_peak.items())
            }
            for service, figures in services.items():
                figures["cpu_s"] = round(sum(s.cpu_to - s.cpu_from for s in self._seen.values()
                                             if s.service == service), 2)
            processes = [
                {"service": s.service, "process": s.label, "peak_mib": _mib(s.peak_kib), "end_mib": _mib(s.end_kib),
                 "cpu_s": round(s.cpu_to - s.cpu_from, 2), "running_at_end": s.last_sample == last}
                for s in sorted(self._seen.values(), key=lambda s: (s.service, -s.peak_kib))
            ]
        return {"what": "resident memory (VmRSS) from /proc, sampled every "
                        f"{self.interval_s:g} s; per service the sum of its processes; cpu_s: the CPU time (user + "
                        "system) they used while sampled (a process that ended between two samples: up to its last)",
                "samples": self.samples, "services": services, "processes": processes}

    def _alive_at(self, service: str, last: int) -> bool:
        return any(s.service == service and s.last_sample == last for s in self._seen.values())

    def summary(self) -> str:
        """One line for the console: ``api 612/580 MiB, stream 1,840/1,790 MiB, ...`` (peak/end)."""
        services = self.report()["services"]
        return "RSS peak/end: " + ", ".join(f"{name} {v['peak_mib']:,.0f}/{v['end_mib']:,.0f} MiB"
                                            for name, v in services.items())


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute: how fast a memory series grows."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var * 60


def mapping_group(m: procfs.Mapping) -> str:
    """What a mapping most likely holds, for telling which part of a process's RSS grows: a file by its name, the
    kernel's named areas as they are, and anonymous memory by size (8 MiB ones are thread stacks; the allocators'
    regions have other sizes)."""
    if m.path.startswith("/"):
        return "file " + Path(m.path.removesuffix(" (deleted)")).name
    if m.path:
        return m.path
    return f"anonymous {m.perms} {m.size_kib:,} KiB"


def mapping_totals(found: list[procfs.Mapping]) -> dict[str, int]:
    """RSS (KiB) by coarse part: the chDB library, other files, the brk heap, thread stacks, other anonymous memory."""
    totals = dict.fromkeys(("chdb library", "other files", "[heap]", "thread stacks", "other anonymous"), 0)
    for m in found:
        if m.path.startswith("/"):
            part = "chdb library" if "_chdb" in m.path or "libchdb" in m.path else "other files"
        elif m.path == "[heap]":
            part = "[heap]"
        elif not m.path and m.size_kib == 8192:
            part = "thread stacks"
        else:
            part = "other anonymous"
        totals[part] += m.rss_kib
    return totals


def mapping_growth(before: list[procfs.Mapping], after: list[procfs.Mapping], top: int = 12) -> list[dict]:
    """The ``top`` groups (``mapping_group``) whose RSS grew most from ``before`` to ``after``, with how many
    mappings each had then and now: a growing count is new regions (threads, allocator extents), a constant one
    pages touched in regions that were there."""
    groups: dict[str, list[int]] = {}  # group -> [rss before, rss after, mappings before, mappings after]
    for index, snapshot in ((0, before), (1, after)):
        for m in snapshot:
            entry = groups.setdefault(mapping_group(m), [0, 0, 0, 0])
            entry[index] += m.rss_kib
            entry[2 + index] += 1
    ranked = sorted(groups.items(), key=lambda kv: kv[1][1] - kv[1][0], reverse=True)[:top]
    return [{"group": g, "rss_delta_mib": round((a - b) / 1024, 2), "rss_mib": round(a / 1024, 1),
             "mappings_before": nb, "mappings_after": na} for g, (b, a, nb, na) in ranked]


def region_growth(before: list[procfs.Mapping], after: list[procfs.Mapping], top: int = 12) -> list[dict]:
    """The ``top`` single mappings (by start address) whose RSS grew most, with their size then and now: the
    kernel merges neighbouring anonymous regions, so a heap that grows shows here as one region whose size changes,
    where ``mapping_group`` sees a group disappear and another appear."""
    then = {(m.start, m.path): m for m in before}
    rows = []
    for m in after:
        old = then.get((m.start, m.path))
        rows.append({"region": f"{m.start:#x} {m.perms} {m.path or 'anonymous'}",
                     "rss_delta_mib": round((m.rss_kib - (old.rss_kib if old else 0)) / 1024, 2),
                     "rss_mib": round(m.rss_kib / 1024, 1), "size_mib_before": round(old.size_kib / 1024, 1)
                     if old else None, "size_mib_after": round(m.size_kib / 1024, 1)})
    return sorted(rows, key=lambda r: r["rss_delta_mib"], reverse=True)[:top]


class MappingSampler:
    """Every ``interval_s``, one process's mappings (``/proc/<pid>/smaps``), found anew by ``find_pid`` each time
    (a restarted service has a new pid): the RSS of each coarse part over time, and the mappings at the first
    sample after ``warmup_s`` and at the last, so a report can say which groups grew in between."""

    def __init__(self, find_pid: Callable[[], int | None], warmup_s: float, interval_s: float = 30.0) -> None:
        self.find_pid, self.warmup_s, self.interval_s = find_pid, warmup_s, interval_s
        self.series: dict[str, list[tuple[float, float]]] = {}  # part -> (seconds since start, MiB)
        self.after_warmup: tuple[float, list[procfs.Mapping]] | None = None
        self.last: tuple[float, list[procfs.Mapping]] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mapping-sampler", daemon=True)
        self._started = time.monotonic()

    def sample(self) -> None:
        pid = self.find_pid()
        found = procfs.mappings(pid) if pid is not None else None
        if not found:
            return
        at = round(time.monotonic() - self._started, 1)
        self.last = (at, found)
        if self.after_warmup is None and at >= self.warmup_s:
            self.after_warmup = self.last
        for part, kib in mapping_totals(found).items():
            self.series.setdefault(part, []).append((at, kib / 1024))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def report(self) -> dict[str, Any]:
        """Per coarse part its slope (MiB/min) after the warm-up, and the groups that grew from then to the end."""
        if self.after_warmup is None or self.last is None or self.last[0] <= self.after_warmup[0]:
            return {"why": "fewer than two samples after the warm-up; run longer"}
        parts = {}
        for part, points in self.series.items():
            steady = [p for p in points if p[0] >= self.warmup_s]
            parts[part] = {"first_mib": round(steady[0][1], 1), "last_mib": round(steady[-1][1], 1),
                           "per_min": round(slope_per_minute(steady), 3)}
        return {"parts": parts, "from_s": self.after_warmup[0], "to_s": self.last[0],
                "grew_most": mapping_growth(self.after_warmup[1], self.last[1]),
                "regions_grew_most": region_growth(self.after_warmup[1], self.last[1])}

    def __enter__(self) -> MappingSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
