"""How the stream job stops: on SIGTERM or Ctrl-C, within a bounded time, whatever the JVM does.

Kept apart from the job so that the stack can read the stop budget without importing pyspark.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQuery

#: How long a stop (SIGTERM, Ctrl-C) may take: stopping the queries (a micro-batch in flight is
#: abandoned after QUERY_STOP_SECONDS; its replay is a no-op thanks to the idempotency tokens), then
#: the Spark session. Past it the process exits anyway and the watchdog kills the JVM. The stack
#: gives the stream more than this before it SIGKILLs the group (cli/app_services.py).
STOP_SECONDS = 15.0
QUERY_STOP_SECONDS = 8.0


@contextmanager
def stop_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` instead of killing the interpreter mid-call, so the job can
    stop its queries and Spark session; outside the main thread (tests) signals stay as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_within(
    spark: SparkSession, queries: Sequence[StreamingQuery], budget: float, progress: Callable[[str], None]
) -> bool:
    """Stop ``queries`` then ``spark`` in a helper thread; False if that took longer than ``budget`` s.

    Both calls go through the JVM, which may itself be shutting down (it got the same SIGTERM) or be
    stuck behind a micro-batch; errors are reported and the next step is tried anyway.
    """

    def stop_all() -> None:
        for query in queries:
            try:
                if query.isActive:
                    query.stop()
            except Exception as exc:  # noqa: BLE001 - py4j errors of a JVM that is going away
                progress(f"stopping query {query.name}: {exc.__class__.__name__}: {str(exc)[:200]}")
        try:
            spark.stop()
        except Exception as exc:  # noqa: BLE001
            progress(f"stopping the Spark session: {exc.__class__.__name__}: {str(exc)[:200]}")

    worker = threading.Thread(target=stop_all, name="stream-stop", daemon=True)
    worker.start()
    worker.join(budget)
    return not worker.is_alive()
