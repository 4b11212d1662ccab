"""Serving yields the CPU to the stream when the box is short of it.

On one machine the stream's micro-batches and the dashboards' queries share the cores. Linux shares them fairly
between runnable work, so with twenty clients asking uncached 90-day series each micro-batch took twice as long
and the freshness p95 went from ~2 s to ~5 s (docs/benchmarks.md). Freshness is the promise; a query can wait
a little. So the serving processes (the API, its workers, the hot node) lower their own CPU priority at start:
idle cores still go to them in full, and only when the stream wants a core does it win.

Two knobs, because Linux has two levels of fairness: the process's nice value (inherited by every thread it
starts) weighs it against processes of the same scheduling group, and its autogroup's nice value weighs its
session against the others' (with ``sched_autogroup_enabled``, each session started apart, as the local stack
starts its services, is such a group). Raising either needs no privilege; lowering it again would.
"""

from __future__ import annotations

import os

from common.procfs import PROC, autogroup_nice


def yield_cpu(nice: int) -> list[str]:
    """Lower this process's CPU priority to ``nice`` (0: leave it) and say what was done.

    Linux keeps a nice value per thread, and a new thread takes its starter's: every thread running now is set (some
    start before any code of ours, with the libraries' imports), and the threads started later inherit it."""
    if nice <= 0:
        return []
    done = []
    raised = 0
    for task in (PROC / "self" / "task").iterdir():
        try:
            if os.getpriority(os.PRIO_PROCESS, int(task.name)) < nice:
                os.setpriority(os.PRIO_PROCESS, int(task.name), nice)
                raised += 1
        except ProcessLookupError:  # a thread that has just ended
            continue
    if raised:
        done.append(f"nice {nice}")
    group = autogroup_nice(os.getpid())  # None: no autogroups (kernel option off), the nice value is enough
    if group is not None and group < nice:
        (PROC / "self" / "autogroup").write_text(str(nice))
        done.append(f"its session's autogroup nice {nice}")
    return done
