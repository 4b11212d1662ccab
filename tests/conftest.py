"""Suite-wide reporting: how long each test file took, so slow files are visible in every run (CI too)."""

from __future__ import annotations

from collections import defaultdict

import pytest

_seconds_per_file: defaultdict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # setup, call and teardown all count: a session fixture's start-up is paid by the first file using it
    _seconds_per_file[report.nodeid.split("::", 1)[0]] += report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _seconds_per_file:
        return
    terminalreporter.section("seconds per test file")
    for path, seconds in sorted(_seconds_per_file.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{seconds:8.1f}  {path}")
