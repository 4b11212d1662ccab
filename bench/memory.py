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
            for service, info in members:
                pages = statm[info.pid]
                if pages is None or (pages == statm.get(info.ppid) and pages[1] > 0):
                    continue  # gone, or a child sharing its parent's memory until it execs: counted once
                kib = pages[1] * PAGE_KIB
                seen = self._seen.setdefault((info.pid, info.start_ticks), _Seen(service, info.describe()))
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
            processes = [
                {"service": s.service, "process": s.label, "peak_mib": _mib(s.peak_kib), "end_mib": _mib(s.end_kib),
                 "running_at_end": s.last_sample == last}
                for s in sorted(self._seen.values(), key=lambda s: (s.service, -s.peak_kib))
            ]
        return {"what": "resident memory (VmRSS) from /proc, sampled every "
                        f"{self.interval_s:g} s; per service the sum of its processes",
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
