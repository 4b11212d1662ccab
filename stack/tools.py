"""Helpers shared by the service modules: the stack's one error type, tool lookup, long-running
commands with progress, and file locks.

They exist so that every failure a developer can hit on a fresh machine (a missing JDK, no network
for Maven, a cold Go build) ends in one sentence that says what to do, instead of a traceback.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

Progress = Callable[[str], None]


class StackError(RuntimeError):
    """A failure of the local stack that the user can fix; the message says how."""


#: What to install when a tool is missing, keyed by executable name.
INSTALL_HINTS: dict[str, str] = {
    "java": "a Java 17+ runtime (Debian: `apt-get install -y openjdk-17-jre-headless`)",
    "javac": "a Java 17+ JDK (Debian: `apt-get install -y openjdk-17-jdk-headless`)",
    "mvn": "Apache Maven (Debian: `apt-get install -y maven`)",
    "go": "Go 1.24 or newer (https://go.dev/dl/; make sure `go` is on PATH)",
    "redis-server": "Redis (Debian: `apt-get install -y redis-server`)",
}


def require_tool(name: str, purpose: str) -> str:
    """Return the tool's path, or fail naming the package to install.

    Checked lazily, just before the tool is needed, so a machine that only uses external services
    (``*_manage=false``) never needs the JDK, Maven or Go.
    """
    path = shutil.which(name)
    if path is None:
        hint = INSTALL_HINTS.get(name, f"`{name}`")
        raise StackError(f"`{name}` not found on PATH; it is needed {purpose}. Install {hint}.")
    return path


def tail(path: Path, lines: int = 25, since: int = 0) -> str:
    """Last lines of a log, optionally only what was written after byte offset ``since``.

    Used in error messages so the user sees why a service died without opening the log.
    """
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            start = max(since, size - 64 * 1024)
            fh.seek(start)
            data = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    out = [line for line in data.splitlines() if line.strip()][-lines:]
    return "\n".join("    " + line for line in out) if out else "(log is empty)"


def _last_line(path: Path) -> str:
    text = tail(path, lines=1).strip()
    return text if len(text) <= 90 else "…" + text[-89:]


def run_logged(
    cmd: Sequence[str],
    *,
    log_file: Path,
    progress: Progress,
    label: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    heartbeat: float = 15.0,
    failure_hint: str = "",
) -> None:
    """Run a slow one-off command (Maven, `go install`, storage format) to completion.

    Output goes to a log file rather than the terminal because Maven and Go are very chatty; a
    heartbeat line every ``heartbeat`` seconds shows the user that something is still happening and
    what the tool is doing, which matters for the ~2.5 min cold MinIO build.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    started = time.monotonic()
    with log_file.open("ab") as log:
        offset = log.tell()
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(cmd), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env, cwd=cwd
        )
        next_beat = started + heartbeat
        try:
            while proc.poll() is None:
                time.sleep(0.2)
                now = time.monotonic()
                if now >= next_beat:
                    progress(f"{label}: still working ({now - started:.0f}s) — {_last_line(log_file)}")
                    next_beat = now + heartbeat
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        raise StackError(
            f"{label}: `{' '.join(cmd[:3])} …` failed with exit code {proc.returncode}. "
            f"Last lines of {log_file}:\n{tail(log_file, since=offset)}"
            + (f"\n{failure_hint}" if failure_hint else "")
        )


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the block.

    Two `stack up` calls (the demo and a test session, or two clones sharing the cache) must not
    build the same cache entry or start the same service twice; the second one waits and then finds
    the work done.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
