"""Pid files and signals for detached service processes.

Services outlive the command that started them (`lakehouse stack up` returns, the JVM keeps
running), so the only link between a later `status`/`down` and the process is the pid file. A pid
alone can be reused by an unrelated process after a reboot or a crash, so the file also records
the process start time and a pid only counts as ours when both match.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

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


def spawn(cmd: list[str], *, env: dict[str, str], cwd: Path | None, log_file: Path, pid_file: Path) -> PidRecord:
    """Start ``cmd`` detached from our session, output appended to ``log_file``, and record it.

    ``start_new_session`` puts the service in its own process group, so Ctrl-C in the terminal
    that ran `stack up` does not kill it and `down` can signal the whole group.
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
        )
    _CHILDREN[proc.pid] = proc
    record = PidRecord(proc.pid, _start_ticks(proc.pid) or "")
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": record.pid, "start_ticks": record.start_ticks, "command": cmd}))
    tmp.replace(pid_file)
    return record


def stop(record: PidRecord, timeout: float) -> bool:
    """SIGTERM the service's process group, SIGKILL it after ``timeout`` s; True if it needed a kill.

    SIGTERM first because Kafka and Redis shut down cleanly on it (Kafka otherwise replays its
    log on the next start, which is slow).
    """

    def signal_group(sig: signal.Signals) -> None:
        try:
            if os.getpgid(record.pid) == record.pid:
                os.killpg(record.pid, sig)
            else:
                os.kill(record.pid, sig)
        except ProcessLookupError:
            pass

    signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    killed = False
    while record.alive():
        if time.monotonic() >= deadline:
            signal_group(signal.SIGKILL)
            killed = True
            kill_deadline = time.monotonic() + 10
            while record.alive() and time.monotonic() < kill_deadline:
                time.sleep(0.1)
            break
        time.sleep(0.1)
    forget(record.pid)
    return killed
