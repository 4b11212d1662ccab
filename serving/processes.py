"""The serving processes: one API process that is also the hot node (the default), or a hot node and N workers.

``api_workers = 0`` (default): ``lakehouse serve`` is one process that owns embedded chDB, serves it to
the other processes over Arrow Flight and answers HTTP.

``api_workers = N >= 1``: ``lakehouse hot-node`` is the one process that owns chDB (migrations, Flight);
``lakehouse serve`` runs N HTTP workers (``serving.workers``) that reach it over Flight like any other
client. A worker needs the hot node only to compute an answer: cached answers come from Redis, ingestion
goes to Kafka, API keys are checked against each worker's copy of the key table and rate limits are kept
in Redis. So the hot node can restart while dashboards and ingestion go on, and the workers can be
restarted one at a time (SIGHUP) while the hot node goes on.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

from common.settings import Settings
from serving.observability import configure_logging
from serving.start_checks import unsafe_start_reason
from serving.workers import WorkerSupervisor, worker_config

if TYPE_CHECKING:
    from fastapi import FastAPI

    from common.hot_store import HotStore
    from serving.hot_node import HotNodeServer

# The app and the hot store are imported where they are used: the workers' supervisor loads neither (it only
# starts processes), which keeps it at a third of a worker's memory.

log = logging.getLogger(__name__)


def _open_owned_store(settings: Settings) -> tuple[HotStore, HotNodeServer | None]:
    """The hot store this process owns, migrated, and its Flight server when ClickHouse is embedded."""
    from common.hot_schema import migrate
    from common.hot_store import ensure_hot_node_token, hot_node_tls, open_hot_store
    from common.malloc_arenas import limit_malloc_arenas
    from serving.hot_node import start_hot_node

    limit_malloc_arenas(settings.hot_node_malloc_arenas)  # before chDB's and Flight's threads start
    store = open_hot_store(settings, is_hot_node=True)
    applied = migrate(store)
    if applied:
        log.info("hot tier migrations applied: %s", ", ".join(applied))
    server = None
    if settings.embedded_clickhouse:
        server = start_hot_node(store, settings.hot_node_url, ensure_hot_node_token(settings),
                                settings.hot_node_reader_token, tls=hot_node_tls(settings))
    return store, server


def _app_over(settings: Settings, store: HotStore) -> FastAPI:
    from serving.app import build_serving, create_app
    from serving.observability import ExternalSampler
    from serving.tracing import configure_tracing

    configure_tracing(settings)  # off unless LAKEHOUSE_OTEL_ENDPOINT is set
    serving = build_serving(settings, store)
    serving.metrics.sampler = ExternalSampler(settings, store)
    serving.metrics.sampler.start()
    return create_app(serving)


def serve(settings: Settings) -> None:
    """Run the API until stopped: one process that is also the hot node, or ``api_workers`` workers."""
    reason = unsafe_start_reason(settings)
    if reason:
        raise SystemExit(reason)
    configure_logging(settings.log_format)
    if settings.api_workers > 0:
        serve_workers(settings)
        return
    import uvicorn

    store, _ = _open_owned_store(settings)
    uvicorn.run(_app_over(settings, store), host=settings.api_host, port=settings.api_port, log_level="warning",
                access_log=False, log_config=None)  # keep configure_logging's handlers (JSON), not uvicorn's


def worker_app() -> FastAPI:
    """One API worker's app (a uvicorn factory: every worker process builds its own from the environment).
    Its hot store is the hot node over Flight (embedded chDB) or the ClickHouse server, never chDB itself."""
    from common.hot_store import open_hot_store

    settings = Settings()
    configure_logging(settings.log_format)
    return _app_over(settings, open_hot_store(settings, is_hot_node=False))


def serve_workers(settings: Settings) -> None:
    """``api_workers`` HTTP workers on the API port, supervised (SIGHUP: rolling restart; SIGTERM: stop)."""
    config = worker_config("serving.processes:worker_app", settings.api_host, settings.api_port,
                           settings.api_graceful_shutdown_seconds)
    log.info("starting %d API workers; the hot node is %s", settings.api_workers,
             settings.hot_node_url if settings.embedded_clickhouse else settings.effective_clickhouse_dsn)
    WorkerSupervisor(config, settings.api_workers).run()


def run_hot_node(settings: Settings) -> None:
    """Own embedded chDB and serve it over Flight until SIGTERM/SIGINT (the API then runs in workers)."""
    configure_logging(settings.log_format)
    if not settings.embedded_clickhouse:
        raise SystemExit("there is no hot node to run: ClickHouse is a server (LAKEHOUSE_CLICKHOUSE_DSN), which the "
                         "API workers reach directly")
    # blocked before any thread starts (chDB's, Flight's inherit the mask), then awaited here: the Flight server
    # installs signal handlers of its own, which would otherwise take SIGTERM from Python's
    stopping = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
    store, server = _open_owned_store(settings)
    log.info("hot node ready at %s", settings.hot_node_url)
    signal.sigwait(stopping)
    log.info("hot node stopping: finishing the calls in flight")
    if server is not None:
        server.shutdown()  # waits for the calls in flight
    store.close()
