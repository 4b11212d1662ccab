"""Pid files and signals for detached service processes.

Services outlive the command that started them (`lakehouse stack up` returns, the JVM keeps
running), so the only link between a later `status`/`down` and the process is the pid file. A pid
alone can be reused by an unrelated process after a reboot or a crash, so the file also records
the process start time and a pid only counts as ours when both match.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common import procfs

#: Popen objects of services started by this Python process, so that they are reaped (no zombies
#: in a long pytest session) and Python does not warn about still-running children.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _start_ticks(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), None if gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return ""
    fields = raw[raw.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        child.poll()


def exit_code(pid: int) -> int | None:
    """Exit status of a service this Python process started and that has exited, else None."""
    child = _CHILDREN.get(pid)
    return None if child is None else child.poll()


def forget(pid: int) -> None:
    """Reap a service this Python process started once it has exited (no zombie, no warning).

    /proc can stop listing a process a moment before ``waitpid`` reports it, so a non-blocking
    poll alone can miss the exit; this waits briefly instead.
    """
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _CHILDREN[pid] = child


@dataclass(frozen=True)
class PidRecord:
    pid: int
    start_ticks: str

    def alive(self) -> bool:
        """True while the recorded process (not a later one reusing the pid) runs."""
        _reap(self.pid)
        if Path("/proc/self/stat").exists():
            ticks = _start_ticks(self.pid)
            if ticks is None:
                _reap(self.pid)  # it may have exited after the first poll: reap the zombie now
                return False
            return ticks == self.start_ticks or not self.start_ticks or ticks == ""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def read_pid(pid_file: Path) -> PidRecord | None:
    """The record in ``pid_file``, or None when there is none or it is unreadable."""
    try:
        data = json.loads(pid_file.read_text())
        return PidRecord(int(data["pid"]), str(data.get("start_ticks", "")))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _default_stop_signals() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


def spawn(cmd: list[str], *, env: dict[str, str], cwd: Path | None, log_file: Path, pid_file: Path) -> PidRecord:
    """Start ``cmd`` detached from our session, output appended to ``log_file``, and record it.

    ``start_new_session`` puts the service in its own process group, so Ctrl-C in the terminal
    that ran `stack up` does not kill it and `down` can signal the whole group. A signal ignored
    here would stay ignored in the service (an ignored disposition survives ``exec``): started from
    a wrapper that ignores SIGTERM (some job runners, ``nohup``-like launchers), every service would
    outlive `down`'s SIGTERM and be SIGKILLed. The stop signals are put back to their default first.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_default_stop_signals if any(
                signal.getsignal(sig) == signal.SIG_IGN for sig in STOP_SIGNALS) else None,
        )
    _CHILDREN[proc.pid] = proc
    record = PidRecord(proc.pid, _start_ticks(proc.pid) or "")
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": record.pid, "start_ticks": record.start_ticks, "command": cmd}))
    tmp.replace(pid_file)
    return record


@dataclass(frozen=True)
class StopReport:
    """What a stop did: every process it found, those it had to SIGKILL, and any still running."""

    pid: int
    found: tuple[str, ...] = ()
    killed: tuple[str, ...] = ()
    left: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True only when nothing of what was stopped is left running."""
        return not self.left

    def summary(self) -> str:
        """``stopped pid 1 python (…), pid 2 java (…) in 1.2s``, then what needed SIGKILL or survived."""
        text = f"stopped {', '.join(self.found) or 'nothing'} in {self.seconds:.1f}s"
        if self.killed:
            text += f"; SIGKILLed after the SIGTERM timeout: {', '.join(self.killed)}"
        if self.left:
            text += f"; STILL RUNNING: {', '.join(self.left)}"
        return text


def _send(pid: int, start_ticks: str, sig: signal.Signals) -> None:
    """Signal ``pid`` unless it now names another process (pids are reused)."""
    now = procfs.read_process(pid, details=False)
    if now is None or now.gone or (start_ticks and now.start_ticks != start_ticks):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _terminate(
    send: Callable[[signal.Signals], None],
    live: Callable[[], list[procfs.ProcessInfo]],
    timeout: float,
    kill_timeout: float,
    reap: Callable[[], None] = lambda: None,
) -> tuple[list[procfs.ProcessInfo], list[procfs.ProcessInfo]]:
    """SIGTERM, wait until ``live()`` is empty or ``timeout``, SIGKILL what is left and wait again;
    returns (what needed SIGKILL, what survived even that)."""
    send(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while (remaining := live()) and time.monotonic() < deadline:
        time.sleep(0.1)
        reap()
    if not remaining:
        return [], []
    send(signal.SIGKILL)
    deadline = time.monotonic() + kill_timeout
    while (left := live()) and time.monotonic() < deadline:
        time.sleep(0.1)
        reap()
    return remaining, left


def stop(record: PidRecord, timeout: float, kill_timeout: float = 10.0) -> StopReport:
    """Stop the service's whole process group, and what its members started outside the group.

    SIGTERM first because Kafka and Redis shut down cleanly on it (Kafka otherwise replays its log
    on the next start, which is slow) and the stream job stops its queries; SIGKILL after
    ``timeout`` s. The wait is for every process, not only the one we started: a Python driver
    exits at once on SIGTERM while its JVM, in the same group, may go on for good. The group is
    signalled even when its leader is already gone (a killed driver leaves its JVM behind), unless
    the leader's pid now names another process, which Linux only allows once the group is empty.
    """
    started = time.monotonic()
    if not procfs.available():
        return _stop_without_proc(record, timeout, started)
    pgid = record.pid
    leader = procfs.read_process(record.pid, details=False)
    if leader is not None and not leader.gone and record.start_ticks and leader.start_ticks != record.start_ticks:
        forget(record.pid)
        return StopReport(record.pid, seconds=time.monotonic() - started)
    table = procfs.processes()
    members = [p for p in table if p.pgid == pgid and not p.gone]
    # pyspark's daemon, for one, moves its workers into a group of their own.
    outside = [p for p in procfs.descendants({p.pid for p in members}, table) if p.pgid != pgid and not p.gone]
    known = {p.pid: p for p in members + outside}
    tracked = {(p.pid, p.start_ticks) for p in outside}

    def live() -> list[procfs.ProcessInfo]:
        now = procfs.processes(details=False)
        alive = [p for p in now if not p.gone and (p.pgid == pgid or (p.pid, p.start_ticks) in tracked)]
        for p in alive:
            if p.pid not in known:  # started after the first look: read its command line once
                known[p.pid] = procfs.read_process(p.pid) or p
        return alive

    def send(sig: signal.Signals) -> None:
        _killpg(pgid, sig)
        for pid, ticks in tracked:
            _send(pid, ticks, sig)

    killed, left = _terminate(send, live, timeout, kill_timeout, reap=lambda: _reap(record.pid))
    forget(record.pid)
    return StopReport(
        record.pid,
        found=tuple(p.describe() for p in known.values()),
        killed=tuple(known[p.pid].describe() for p in killed),
        left=tuple(known[p.pid].describe() for p in left),
        seconds=time.monotonic() - started,
    )


def stop_processes(found: Sequence[procfs.ProcessInfo], timeout: float, kill_timeout: float = 10.0) -> StopReport:
    """Stop individual processes (strays of a stack home), each only while its pid still names it."""
    started = time.monotonic()
    by_key = {(p.pid, p.start_ticks): p for p in found}

    def live() -> list[procfs.ProcessInfo]:
        return [p for p in procfs.processes(details=False) if not p.gone and (p.pid, p.start_ticks) in by_key]

    def send(sig: signal.Signals) -> None:
        for pid, ticks in by_key:
            _send(pid, ticks, sig)

    killed, left = _terminate(send, live, timeout, kill_timeout)
    return StopReport(
        found[0].pid if found else 0,
        found=tuple(p.describe() for p in found),
        killed=tuple(by_key[(p.pid, p.start_ticks)].describe() for p in killed),
        left=tuple(by_key[(p.pid, p.start_ticks)].describe() for p in left),
        seconds=time.monotonic() - started,
    )


def _stop_without_proc(record: PidRecord, timeout: float, started: float) -> StopReport:
    """Where there is no /proc (macOS): signal the group, wait while the leader lives."""
    with contextlib.suppress(ProcessLookupError):
        _killpg(os.getpgid(record.pid), signal.SIGTERM)
    killed: tuple[str, ...] = ()
    deadline = time.monotonic() + timeout
    while record.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if record.alive():
        _killpg(record.pid, signal.SIGKILL)
        killed = (f"pid {record.pid}",)
        deadline = time.monotonic() + 10
        while record.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
    left = (f"pid {record.pid}",) if record.alive() else ()
    forget(record.pid)
    return StopReport(record.pid, (f"pid {record.pid}",), killed, left, time.monotonic() - started)
