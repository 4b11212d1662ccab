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


def jvm_gone(exc: BaseException) -> bool:
    """True when a py4j call failed because the JVM has exited (it gets the group's SIGTERM too)."""
    return isinstance(exc, ConnectionError) or type(exc).__name__ == "Py4JNetworkError"


def stop_within(
    spark: SparkSession, queries: Sequence[StreamingQuery], budget: float, progress: Callable[[str], None]
) -> bool:
    """Stop ``queries`` then ``spark`` in a helper thread; False if that took longer than ``budget`` s.

    Every call goes through the JVM, which may be stuck behind a micro-batch or already gone: a stop
    of the stack signals the whole process group, so the JVM runs its own shutdown hooks at the same
    time. A JVM that is gone ends the work quietly; other errors are reported and the next step tried.
    """

    def attempt(what: str, action: Callable[[], None]) -> bool:
        try:
            action()
            return True
        except Exception as exc:  # whatever py4j raises, the stop goes on
            if jvm_gone(exc):
                progress("the JVM has already stopped (it received the same signal)")
                return False
            progress(f"{what}: {exc.__class__.__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
            return True

    def stop_all() -> None:
        for index, query in enumerate(queries, 1):
            if not attempt(f"stopping query {index} of {len(queries)}", lambda q=query: q.isActive and q.stop()):
                return
        attempt("stopping the Spark session", spark.stop)

    worker = threading.Thread(target=stop_all, name="stream-stop", daemon=True)
    worker.start()
    worker.join(budget)
    return not worker.is_alive()
