"""The generic service manager: a `ProcessService` describes one local process, a `Stack` starts,
checks and stops an ordered list of them idempotently.

Kafka, MinIO and Redis are the first three services; the API/hot node and the stream job are
meant to be registered the same way (`Stack.register`), so the CLI, the demo and the pytest
fixtures share one notion of "is it running" and one place that writes pid files and logs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from common import procfs
from common.spark_watchdog import MARKER as SPARK_DRIVER_MARKER

from . import process
from . import strays as home_scan
from .net import port_open
from .tools import Progress, StackError, file_lock, tail


@dataclass
class ProcessService:
    """One service of the stack.

    ``command`` may be a callable because the executable often exists only after ``prepare`` ran
    (jars resolved, MinIO built). ``ready`` must be cheap (about a second at most): it is polled
    while starting and called by ``status``. ``after_ready`` does idempotent set-up that needs the
    service up (topics, buckets) and runs on every ``up``, so a topic deleted by hand comes back.
    With ``managed=False`` nothing is started: ``up`` only checks that the endpoint answers.
    ``ports`` must be free before a start (a foreign process there is reported, not fought with);
    ``manage_setting`` names the setting that switches management off, for error messages.
    """

    name: str
    command: Sequence[str] | Callable[[], Sequence[str]]
    ready: Callable[[], bool]
    log_file: Path
    pid_file: Path
    endpoint: str
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    managed: bool = True
    ports: Sequence[tuple[str, int]] = ()
    prepare: Callable[[], None] | None = None
    after_ready: Callable[[], None] | None = None
    start_timeout: float = 60.0
    stop_timeout: float = 20.0
    hint: str = ""
    manage_setting: str = ""


#: running: answers at its endpoint; stopped: no process of ours; unhealthy: our process runs (or
#: the external endpoint is configured) but does not answer.
State = Literal["running", "stopped", "unhealthy"]


@dataclass(frozen=True)
class ServiceStatus:
    """What `status` reports for one service."""

    name: str
    state: State
    pid: int | None
    endpoint: str
    managed: bool
    log_file: Path | None
    detail: str = ""

    def __str__(self) -> str:
        pid = str(self.pid) if self.pid else "-"
        kind = "" if self.managed else " (external)"
        extra = f"  {self.detail}" if self.detail else ""
        return f"{self.name:<10} {self.state:<10} pid {pid:<8} {self.endpoint}{kind}{extra}"


def process_service(
    home: Path,
    name: str,
    command: Sequence[str] | Callable[[], Sequence[str]],
    ready: Callable[[], bool],
    endpoint: str,
    **options: object,
) -> ProcessService:
    """A `ProcessService` with the stack's file layout: ``<home>/logs/<name>.log`` and
    ``<home>/run/<name>.pid``, so every service's files are where `down` and users look for them."""
    return ProcessService(
        name=name,
        command=command,
        ready=ready,
        endpoint=endpoint,
        log_file=home / "logs" / f"{name}.log",
        pid_file=home / "run" / f"{name}.pid",
        **options,  # type: ignore[arg-type]
    )


class Stack:
    """An ordered set of services: started in registration order, stopped in reverse."""

    def __init__(self, home: Path, services: Iterable[ProcessService] = (), progress: Progress = print) -> None:
        self.home = home
        self.progress = progress
        self._services: dict[str, ProcessService] = {}
        for service in services:
            self.register(service)

    # -- composition -------------------------------------------------------------------------

    def register(self, service: ProcessService) -> None:
        """Add a service after the existing ones (it starts after them and stops before them)."""
        if service.name in self._services:
            raise ValueError(f"service {service.name!r} is already registered")
        self._services[service.name] = service

    @property
    def names(self) -> list[str]:
        """Service names in start order."""
        return list(self._services)

    def service(self, name: str) -> ProcessService:
        """The registered service ``name`` (a `StackError` lists the known names otherwise)."""
        try:
            return self._services[name]
        except KeyError:
            raise StackError(f"unknown service {name!r}; known: {', '.join(self._services)}") from None

    def _select(self, names: Iterable[str] | None) -> list[ProcessService]:
        if names is None:
            return list(self._services.values())
        wanted = set(names)
        for name in wanted:
            self.service(name)
        return [s for s in self._services.values() if s.name in wanted]

    def _lock(self) -> AbstractContextManager[None]:
        return file_lock(self.home / "run" / "stack.lock")

    # -- operations --------------------------------------------------------------------------

    def up(self, names: Iterable[str] | None = None) -> list[ServiceStatus]:
        """Start what is not running and wait until each service is ready; idempotent.

        A healthy running service is left alone (same pid). Raises `StackError` with the log's last
        lines and a next step when a service cannot start; services after it are not started.
        """
        with self._lock():
            for service in self._select(names):
                if service.managed:
                    self._up_managed(service)
                else:
                    self._up_external(service)
                if service.after_ready is not None:
                    service.after_ready()
        return self.status(names)

    def status(self, names: Iterable[str] | None = None) -> list[ServiceStatus]:
        """Per-service state without changing anything (safe to call while `up` runs elsewhere)."""
        return [self._status(s) for s in self._select(names)]

    def strays(self, names: Iterable[str] | None = None) -> list[home_scan.HomeProcess]:
        """Processes of this stack's home that belong to no running service (of ``names``, when
        given: then only those attributed to one of them), e.g. a JVM whose driver was killed."""
        if not procfs.available():
            return []
        table = procfs.processes()
        pgids = set()
        for service in self._services.values():
            record = process.read_pid(service.pid_file) if service.managed else None
            if record is not None and record.alive():
                pgids.add(record.pid)
        exclude_pids, exclude_pgid = home_scan.own_exclusions(table)
        found = home_scan.strays(table, home_scan.home_spellings(self.home), pgids,
                              exclude_pids=exclude_pids, exclude_pgid=exclude_pgid)
        if names is None:
            return found
        wanted = {s.name for s in self._select(names)}
        return [hp for hp in found if hp.service in wanted]

    def left_running(self, within: float = 0.0) -> list[home_scan.HomeProcess]:
        """Every process of this home still running (the caller's own group aside), after waiting up
        to ``within`` s for them to go: what a teardown checks after `down`."""
        deadline = time.monotonic() + within
        while True:
            table = procfs.processes() if procfs.available() else []
            exclude_pids, exclude_pgid = home_scan.own_exclusions(table)
            left = home_scan.home_processes(table, home_scan.home_spellings(self.home),
                                         exclude_pids=exclude_pids, exclude_pgid=exclude_pgid)
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.2)

    def confirm_stopped(self, names: Iterable[str] | None = None, within: float = 15.0) -> str:
        """After `down`: raise `StackError` naming every process of this home still running (of the
        ``names`` services only, when given) after ``within`` s; else say that nothing is left.
        Test sessions and benchmarks call it so that a leak fails loudly instead of starving the next run."""
        if names is None:
            left = self.left_running(within)
        else:
            deadline = time.monotonic() + within
            while (left := self.strays(names)) and time.monotonic() < deadline:
                time.sleep(0.2)
        if left:
            raise StackError(
                f"still running after `down` of {self.home}: {'; '.join(str(hp) for hp in left)}. "
                "Run `lakehouse stack down` with the same LAKEHOUSE_HOME, or kill them by pid."
            )
        what = "no process" if names is None else f"no process of {', '.join(names)}"
        return f"{what} of {self.home} is left running"

    def down(self, names: Iterable[str] | None = None) -> list[ServiceStatus]:
        """Stop managed services in reverse order, then the strays of the home (of those services).

        Each service's whole process group goes (SIGTERM, then SIGKILL after its timeout), also when
        its leader already died and left children behind. Raises `StackError` naming any process
        that survived, so that "stopped" always means nothing of it is left.
        """
        survivors: list[str] = []
        with self._lock():
            for service in reversed(self._select(names)):
                if not service.managed:
                    self.progress(f"{service.name}: external ({service.endpoint}), left alone")
                    continue
                record = process.read_pid(service.pid_file)
                if record is None:
                    self.progress(f"{service.name}: not running")
                    continue
                leader_alive = record.alive()
                report = process.stop(record, service.stop_timeout)
                service.pid_file.unlink(missing_ok=True)
                if not leader_alive and not report.found:
                    self.progress(f"{service.name}: not running (removed a stale pid file)")
                    continue
                self.progress(f"{service.name}: {report.summary()}")
                survivors.extend(report.left)
            survivors.extend(self._stop_strays(names))
        if survivors:
            raise StackError(
                f"these processes of {self.home} survived SIGKILL: {', '.join(survivors)}. They may be stuck "
                "in the kernel (state D in `ps`); check them with `ps -o pid,stat,args -p <pid>`."
            )
        return self.status(names)

    def _stop_strays(self, names: Iterable[str] | None) -> list[str]:
        """Stop the home's strays (of ``names``); returns the descriptions of any that survived."""
        found = self.strays(names)
        if not found:
            return []
        self.progress(f"stray processes of {self.home}: {'; '.join(str(hp) for hp in found)}")
        timeouts = [self._services[hp.service].stop_timeout if hp.service in self._services else 10.0 for hp in found]
        report = process.stop_processes([hp.process for hp in found], timeout=min(10.0, max(timeouts)))
        self.progress(f"strays: {report.summary()}")
        return list(report.left)

    # -- internals ---------------------------------------------------------------------------

    def _status(self, service: ProcessService) -> ServiceStatus:
        def make(state: State, pid: int | None = None, detail: str = "") -> ServiceStatus:
            log = service.log_file if service.managed else None
            return ServiceStatus(service.name, state, pid, service.endpoint, service.managed, log, detail)

        if not service.managed:
            if service.ready():
                return make("running")
            return make("unhealthy", detail="external endpoint does not answer")
        record = process.read_pid(service.pid_file)
        if record is None or not record.alive():
            detail = "stale pid file" if record is not None else ""
            return make("stopped", detail=detail)
        if service.ready():
            return make("running", record.pid)
        return make("unhealthy", record.pid, f"process runs but does not answer; see {service.log_file}")

    def _wait_ready(self, service: ProcessService, record: process.PidRecord | None, timeout: float) -> str:
        """Poll readiness; returns "" when ready, else why not (the process died or time ran out)."""
        deadline = time.monotonic() + timeout
        while True:
            if service.ready():
                return ""
            if record is not None and not record.alive():
                code = process.exit_code(record.pid)
                return "the process exited" + (f" with code {code}" if code is not None else "")
            if time.monotonic() >= deadline:
                return f"not ready after {timeout:.0f}s"
            time.sleep(0.25)

    def _fail(self, service: ProcessService, why: str, log_offset: int = 0) -> StackError:
        next_step = service.hint or f"look at {service.log_file}, then run `lakehouse stack up` again"
        return StackError(
            f"{service.name}: failed to start at {service.endpoint}: {why}.\n"
            f"  Last lines of {service.log_file}:\n{tail(service.log_file, since=log_offset)}\n"
            f"  Next: {next_step}"
        )

    def _up_managed(self, service: ProcessService) -> None:
        record = process.read_pid(service.pid_file)
        if record is not None and record.alive():
            # Ours and alive: healthy means nothing to do; otherwise it may still be starting.
            if service.ready():
                self.progress(f"{service.name}: already running (pid {record.pid}) at {service.endpoint}")
                return
            why = self._wait_ready(service, record, service.start_timeout)
            if not why:
                self.progress(f"{service.name}: running (pid {record.pid}) at {service.endpoint}")
                return
            raise StackError(
                f"{service.name}: pid {record.pid} runs but does not answer at {service.endpoint} ({why}). "
                f"See {service.log_file}; `lakehouse stack down` then `lakehouse stack up` restarts it."
            )
        if record is not None:
            # The leader is gone, but what it started may not be (a JVM under a killed driver).
            report = process.stop(record, service.stop_timeout)
            left_over = f"; {report.summary()}" if report.found else ""
            self.progress(f"{service.name}: removing stale pid file (pid {record.pid} is gone){left_over}")
            service.pid_file.unlink(missing_ok=True)
        for stray in self.strays([service.name]):  # e.g. an orphaned stream JVM still consuming the topic
            self.progress(f"{service.name}: stopping a stray before starting: {stray}")
            process.stop_processes([stray.process], timeout=min(10.0, service.stop_timeout))

        busy = [f"{h}:{p}" for h, p in service.ports if port_open(h, p)]
        if busy:
            raise StackError(
                f"{service.name}: port {', '.join(busy)} is already in use by a process this stack "
                f"(home {self.home}) did not start. Stop that process, choose other ports in the "
                f"LAKEHOUSE_* settings"
                + (f", or set {service.manage_setting}=false to use it as is." if service.manage_setting else ".")
            )

        if service.prepare is not None:
            service.prepare()
        command = list(service.command() if callable(service.command) else service.command)
        env = {**os.environ, **service.env, **home_scan.service_env(self.home, service.name)}
        env.pop(SPARK_DRIVER_MARKER, None)  # a service outlives us: our Spark watchdog must not reap it
        offset = service.log_file.stat().st_size if service.log_file.exists() else 0
        started = time.monotonic()
        record = process.spawn(command, env=env, cwd=service.cwd, log_file=service.log_file,
                               pid_file=service.pid_file)
        why = self._wait_ready(service, record, service.start_timeout)
        if why:
            process.stop(record, service.stop_timeout)
            service.pid_file.unlink(missing_ok=True)
            raise self._fail(service, why, offset)
        self.progress(
            f"{service.name}: started (pid {record.pid}) at {service.endpoint} in {time.monotonic() - started:.1f}s"
        )

    def _up_external(self, service: ProcessService) -> None:
        why = self._wait_ready(service, None, min(service.start_timeout, 10.0))
        if why:
            setting = service.manage_setting or "its manage setting"
            raise StackError(
                f"{service.name}: {setting} is false but nothing answers at {service.endpoint} ({why}). "
                f"Start it, fix the endpoint setting, or set {setting}=true to let the stack run one."
            )
        self.progress(f"{service.name}: external service answers at {service.endpoint}")
