"""The local Dagster instance: ``DAGSTER_HOME`` under the lakehouse home, and ``dagster dev`` on the definitions.

``lakehouse dagster`` runs Dagster's webserver and daemon (``dagster dev -w workspace.yaml``) with
``DAGSTER_HOME=<LAKEHOUSE_HOME>/dagster``, so runs, schedules' ticks and asset history live with the
rest of the local stack's data and survive restarts. The first start writes a ``dagster.yaml`` there
(never overwritten, so it can be edited) that

* turns telemetry off (nothing leaves the machine),
* limits the run queue to two runs at once (each hourly run may start a Spark driver, and the
  stack's own Spark stream job needs the cores too) and to one run per hour (the
  ``dagster/partition`` tag): two runs archiving or restating the same hour must not overlap.

Dagster is started with ``subprocess.Popen`` and default signal handling: a ``dagster dev`` started
from a shell with ``&`` ignores SIGINT and SIGTERM, while one started this way stops on SIGTERM.
This module does not import Dagster, so the command line stays fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from common.settings import REPO_ROOT, Settings

WORKSPACE = REPO_ROOT / "workspace.yaml"
DAGSTER_YAML = """\
# Dagster instance of the lakehouse, written by orchestration/instance.py on first start; edit freely.
telemetry:
  enabled: false
run_queue:
  # Each hourly run may start a Spark driver: keep two at a time on a small machine.
  max_concurrent_runs: 2
  tag_concurrency_limits:
    # Never two runs of the same hour at once (archive and restatement replace the hour whole).
    - key: dagster/partition
      value:
        applyLimitPerUniqueValue: true
      limit: 1
"""


def dagster_home(settings: Settings) -> Path:
    """``DAGSTER_HOME`` of the local stack: ``<LAKEHOUSE_HOME>/dagster``."""
    return settings.home / "dagster"


def prepare_dagster_home(home: Path) -> Path:
    """Create ``home`` with the project's ``dagster.yaml`` unless one is already there; return ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def dagster_dev_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """``dagster dev`` (webserver + daemon) on the project's workspace, with this interpreter."""
    return [sys.executable, "-m", "dagster", "dev", "-w", str(WORKSPACE), "-h", host, "-p", str(port)]


def start_dagster_dev(
    settings: Settings,
    port: int = 3000,
    host: str = "127.0.0.1",
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
    output: IO[bytes] | None = None,
) -> subprocess.Popen:
    """Start ``dagster dev`` in the background and return its process (stop it with ``terminate()``).

    ``env`` is the environment of Dagster and of every run it launches (default: this process's), so
    runs read the same ``LAKEHOUSE_*`` settings; ``DAGSTER_HOME`` is set to ``home`` (default
    ``dagster_home(settings)``). ``output`` receives Dagster's stdout and stderr (default: inherited).
    """
    home = prepare_dagster_home(home or dagster_home(settings))
    child_env = {**(os.environ if env is None else env), "DAGSTER_HOME": str(home)}
    with _sigint_not_inherited_ignored():
        return subprocess.Popen(
            dagster_dev_command(port, host), cwd=REPO_ROOT, env=child_env,
            stdout=output, stderr=subprocess.STDOUT if output is not None else None,
        )


@contextmanager
def _sigint_not_inherited_ignored() -> Iterator[None]:
    """Let the child start with default SIGINT handling even if this process ignores SIGINT.

    A shell starts background commands (``&``) with SIGINT ignored, children inherit that, and
    ``dagster dev`` maps SIGTERM onto its SIGINT handler, so it would then ignore SIGTERM as well and
    could not be stopped. A handler installed here is reset to the default by ``exec`` in the child;
    this process's own handling is restored right after the start. (Only possible on the main thread.)
    """
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if not ignored or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_dagster_dev(settings: Settings, port: int = 3000, host: str = "127.0.0.1") -> int:
    """Run ``dagster dev`` until it exits, Ctrl-C or SIGTERM (passed on to Dagster); returns its exit code."""
    home = dagster_home(settings)
    print(f"Dagster UI at http://{host}:{port} (DAGSTER_HOME={home}); Ctrl-C stops it", flush=True)
    process = start_dagster_dev(settings, port=port, host=host, home=home)
    # SIGTERM to this command (a process manager stopping it) must stop Dagster too, not orphan it.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signal.SIGTERM))
    try:
        return process.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached dagster too (same process group); make sure it stops, then wait for it.
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=60) or 130
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
