"""The serving processes' CPU priority (``common.cpu_priority``): raised to the setting for the process, its threads
(those running and those it starts after) and its session's autogroup, never lowered.

Each case runs in a fresh interpreter of a session of its own (``start_new_session``): a nice value once raised
cannot be lowered without privilege, and an autogroup is the whole session's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux's /proc")

PROGRAM = """
import json, os, sys, threading
from common import procfs
from common.cpu_priority import yield_cpu
seen, go = {}, threading.Event()
def earlier():  # a thread running before the call, as the imports of a library start some
    go.wait()
    seen["earlier"] = os.getpriority(os.PRIO_PROCESS, 0)
started = threading.Thread(target=earlier)
started.start()
done = yield_cpu(int(sys.argv[1]))
go.set()
started.join()
thread = threading.Thread(target=lambda: seen.update(later=os.getpriority(os.PRIO_PROCESS, 0)))
thread.start()
thread.join()
print(json.dumps({"done": done, "process": procfs.nice_value(os.getpid()), "earlier": seen["earlier"],
                  "later": seen["later"], "autogroup": procfs.autogroup_nice(os.getpid())}))
"""


BASE = os.getpriority(os.PRIO_PROCESS, 0)  # the child starts at the runner's own nice value (a CI may run niced)


def run(nice: int, start_at: int = 0) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(nice)], capture_output=True, text=True, check=True, timeout=60,
        cwd=Path(__file__).resolve().parents[2], start_new_session=True,
        preexec_fn=(lambda: os.nice(start_at)) if start_at else None)
    return json.loads(out.stdout)


@pytest.mark.skipif(BASE > 16, reason="the runner's nice value leaves no room to raise it")
def test_the_process_its_threads_and_its_session_yield() -> None:
    target = BASE + 3
    seen = run(target)
    assert seen["process"] == seen["earlier"] == seen["later"] == target
    assert f"nice {target}" in seen["done"]
    if seen["autogroup"] is not None:  # a kernel with autogroups (a new session's starts at 0)
        assert seen["autogroup"] == target and f"its session's autogroup nice {target}" in seen["done"]


def test_zero_leaves_the_priority_alone() -> None:
    seen = run(0)
    assert seen["done"] == [] and seen["process"] == seen["earlier"] == seen["later"] == BASE
    assert seen["autogroup"] in (None, 0)


@pytest.mark.skipif(BASE > 14, reason="the runner's nice value leaves no room to raise it")
def test_a_lower_priority_already_set_is_kept() -> None:
    seen = run(BASE + 2, start_at=5)  # the child starts at BASE + 5
    assert seen["process"] == seen["earlier"] == seen["later"] == BASE + 5
    assert f"nice {BASE + 2}" not in seen["done"]
