"""Stopping real (tiny) processes: the mechanisms of `stack down` without any service.

A Python leader that exits at once on SIGTERM with a child that ignores it is exactly how the
stream's driver and its JVM behaved; these tests rebuild that with two Python processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from common import procfs
from common.spark_watchdog import GRACE_SECONDS
from stack import process
from stack.services import ProcessService, Stack

pytestmark = pytest.mark.skipif(not procfs.available(), reason="needs Linux /proc")

REPO = Path(__file__).resolve().parents[2]
STUBBORN = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(600)")
LEADER_WITH_STUBBORN_CHILD = textwrap.dedent(f"""
    import subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", {STUBBORN!r}])
    time.sleep(600)
""")


def _alive(pid: int, ticks: str) -> bool:
    now = procfs.read_process(pid, details=False)
    return now is not None and not now.gone and now.start_ticks == ticks


def _wait_for_line(log: Path, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {log}")


def test_stop_waits_for_every_member_of_the_group_and_kills_the_one_that_ignores_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    record = process.spawn([sys.executable, "-c", LEADER_WITH_STUBBORN_CHILD], env=dict(os.environ), cwd=None,
                           log_file=log, pid_file=tmp_path / "svc.pid")
    _wait_for_line(log, "\nready\n")
    [child] = [p for p in procfs.processes() if p.pgid == record.pid and p.pid != record.pid and not p.gone]

    report = process.stop(record, timeout=1.0)

    assert report.ok, report.summary()
    assert not _alive(child.pid, child.start_ticks), "the child that ignored SIGTERM must be gone"
    assert [p for p in procfs.processes() if p.pgid == record.pid and not p.gone] == []
    assert len(report.found) == 2
    assert report.killed == (child.describe(),)
    assert report.seconds >= 1.0


def test_a_service_started_by_a_process_that_ignores_sigterm_still_stops_on_it(tmp_path: Path) -> None:
    """An ignored signal stays ignored across ``exec``: without the reset in ``spawn`` the leader here would outlive
    its SIGTERM and be counted among the killed (as the test above did when pytest itself ran with SIGTERM
    ignored)."""
    log = tmp_path / "svc.log"
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        record = process.spawn([sys.executable, "-c", "print('ready', flush=True); import time; time.sleep(600)"],
                               env=dict(os.environ), cwd=None, log_file=log, pid_file=tmp_path / "svc.pid")
    finally:
        signal.signal(signal.SIGTERM, previous)
    _wait_for_line(log, "\nready\n")

    report = process.stop(record, timeout=5.0)

    assert report.ok, report.summary()
    assert report.killed == (), "the service must have stopped on SIGTERM, not SIGKILL"
    assert report.seconds < 5.0


def test_stop_cleans_up_a_group_whose_leader_is_already_dead(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    record = process.spawn([sys.executable, "-c", LEADER_WITH_STUBBORN_CHILD], env=dict(os.environ), cwd=None,
                           log_file=log, pid_file=tmp_path / "svc.pid")
    _wait_for_line(log, "\nready\n")
    os.kill(record.pid, signal.SIGKILL)
    process.forget(record.pid)
    assert not record.alive()
    assert [p for p in procfs.processes() if p.pgid == record.pid and not p.gone], "the child outlives its leader"

    report = process.stop(record, timeout=0.5)

    assert report.ok and len(report.killed) == 1
    assert [p for p in procfs.processes() if p.pgid == record.pid and not p.gone] == []


def _driver(tmp_path: Path, watched: bool) -> tuple[subprocess.Popen[bytes], int]:
    """A process that launches a stubborn 'JVM' the way pyspark does (environment copied at launch)."""
    watch = "from common.spark_watchdog import watched_launch\nwith watched_launch():\n    "
    launch = watch if watched else "if True:\n    "
    code = (
        "import subprocess, sys, time\n" + launch
        + f"child = subprocess.Popen([sys.executable, '-c', {STUBBORN!r}],"
        + " stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
        + "child.stdout.readline()\nprint(child.pid, flush=True)\ntime.sleep(600)\n"
    )
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    assert driver.stdout is not None
    return driver, int(driver.stdout.readline())


def test_a_launched_jvm_dies_with_its_driver_even_on_sigkill_and_without_the_watchdog_it_would_not(
    tmp_path: Path,
) -> None:
    unwatched, orphan = _driver(tmp_path, watched=False)
    watched, child = _driver(tmp_path, watched=True)
    orphan_ticks = procfs.read_process(orphan).start_ticks
    child_ticks = procfs.read_process(child).start_ticks
    try:
        for driver in (unwatched, watched):
            driver.kill()
            driver.wait()
        deadline = time.monotonic() + GRACE_SECONDS + 5
        while _alive(child, child_ticks) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child, child_ticks), "the watchdog must kill the launched process"
        assert _alive(orphan, orphan_ticks), "control: an unwatched launch survives its driver's SIGKILL"
    finally:
        for pid, ticks in ((orphan, orphan_ticks), (child, child_ticks)):
            if _alive(pid, ticks):
                os.kill(pid, signal.SIGKILL)


def test_status_lists_what_a_killed_leader_left_and_down_removes_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    service = ProcessService(
        name="svc", command=[sys.executable, "-c", LEADER_WITH_STUBBORN_CHILD], ready=lambda: True,
        log_file=home / "logs" / "svc.log", pid_file=home / "run" / "svc.pid", endpoint="-", stop_timeout=1.0,
    )
    lines: list[str] = []
    stack = Stack(home, [service], progress=lines.append)
    stack.up()
    _wait_for_line(service.log_file, "\nready\n")
    record = process.read_pid(service.pid_file)
    assert record is not None
    assert stack.strays() == [], "a running service's children are not strays"
    os.kill(record.pid, signal.SIGKILL)
    process.forget(record.pid)
    service.pid_file.unlink()  # as if the pid file were lost too: only the environment tag is left

    [stray] = stack.strays()
    assert stray.service == "svc" and stray.process.ppid != record.pid
    stack.down()
    assert stack.strays() == [] and stack.left_running() == []
    assert any("stray" in line and f"pid {stray.process.pid}" in line for line in lines), lines
    assert "no process" in stack.confirm_stopped(within=0)
