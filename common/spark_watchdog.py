"""Makes a Spark driver's JVM die with the Python process that launched it, even on SIGKILL.

pyspark starts the driver JVM with a pipe on its stdin, and Spark's gateway calls ``System.exit``
when that pipe closes. That is not enough: ``System.exit`` runs Spark's shutdown hooks, and a hook
that blocks (a streaming query waiting for a Kafka broker that is gone, a micro-batch waiting for
its Python callback) keeps the JVM alive for good — and it then ignores SIGTERM too, because a
second exit request waits for the first. A JVM leaked that way holds gigabytes and may keep
consuming a topic.

So, before the JVM is launched, a tiny watchdog process is started beside it. It holds the read end
of a pipe whose write end only the driver's Python process holds: the kernel closes that end
whatever way the driver dies, the watchdog reads end-of-file, gives the JVM ``GRACE_SECONDS`` to
exit by itself and then SIGKILLs every process that carries this driver's marker in its
environment (the JVM and whatever it started, such as pyspark's Python workers, which leave the
JVM's process group). The marker is in the environment only while the JVM is being launched, so
nothing the driver starts later carries it.

The watchdog ignores SIGINT, SIGTERM and SIGHUP so that a signal to the whole process group (Ctrl-C,
`lakehouse stack down`) leaves it to do its job after the driver exits; it ends right after.
Without /proc (not Linux) nothing is started and pyspark's own stdin rule is all there is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import procfs

MARKER = "LAKEHOUSE_SPARK_DRIVER"
GRACE_SECONDS = 5.0

_watchdog: subprocess.Popen[bytes] | None = None
_pipe_write_end: int | None = None
_token = ""


def marked(token: str, table: list[procfs.ProcessInfo], exclude: set[int]) -> list[procfs.ProcessInfo]:
    """Live processes of ``table`` whose environment carries ``token``, except the ``exclude`` pids."""
    return [p for p in table if not p.gone and p.pid not in exclude and p.environ is not None
            and p.environ.get(MARKER) == token]


def _start_watchdog() -> str:
    global _watchdog, _pipe_write_end, _token
    if _watchdog is not None:
        return _token
    token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    read_end, write_end = os.pipe()  # not inheritable: only the watchdog gets the read end
    repo = str(Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k != MARKER}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    _watchdog = subprocess.Popen(
        [sys.executable, "-m", "common.spark_watchdog", str(read_end), token, str(os.getpid())],
        pass_fds=(read_end,), env=env, stdin=subprocess.DEVNULL,
    )
    os.close(read_end)
    _pipe_write_end, _token = write_end, token
    return token


@contextmanager
def watched_launch() -> Iterator[None]:
    """Wrap the call that launches the driver JVM (``SparkSession.builder.getOrCreate()``)."""
    if not procfs.available():
        yield
        return
    token = _start_watchdog()
    previous = os.environ.get(MARKER)
    os.environ[MARKER] = token  # pyspark copies os.environ into the JVM's environment at launch
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MARKER, None)
        else:
            os.environ[MARKER] = previous


def _say(message: str) -> None:
    print(f"spark watchdog: {message}", file=sys.stderr, flush=True)


def reap(token: str, grace: float, exclude: set[int]) -> list[str]:
    """After the driver died: wait ``grace`` s for its marked processes to exit, SIGKILL the rest;
    returns the descriptions of those it had to kill."""
    deadline = time.monotonic() + grace
    terminated = False
    while True:
        left = marked(token, procfs.processes(), exclude)
        if not left:
            return []
        if not terminated:
            for info in left:  # pyspark's Python workers exit on SIGTERM; the JVM is already exiting
                if Path(info.cmdline[0] if info.cmdline else "").name != "java":
                    _signal(info, signal.SIGTERM)
            terminated = True
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    killed = []
    for info in left:
        if _signal(info, signal.SIGKILL):
            killed.append(info.describe())
    return killed


def _signal(info: procfs.ProcessInfo, sig: signal.Signals) -> bool:
    """Signal ``info`` only if its pid still names the same process (pids are reused)."""
    now = procfs.read_process(info.pid, details=False)
    if now is None or now.start_ticks != info.start_ticks or now.gone:
        return False
    try:
        os.kill(info.pid, sig)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str]) -> int:
    read_end, token, driver = int(argv[0]), argv[1], int(argv[2])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            if not os.read(read_end, 4096):
                break
        except InterruptedError:
            continue
    killed = reap(token, GRACE_SECONDS, {os.getpid(), driver})
    if killed:
        _say(f"driver pid {driver} is gone; killed what it left running: {', '.join(killed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
