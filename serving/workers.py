"""N HTTP worker processes on one listening socket, restarted one at a time without dropping a request.

Why one socket shared by inheritance rather than ``SO_REUSEPORT``: with ``SO_REUSEPORT`` each process has
its own accept queue, and the connections waiting in the queue of a process that stops are reset. Here the
supervisor binds the port once and every worker accepts from the same kernel queue, so a stopping worker
only stops taking connections; the others take the rest of the queue.

A rolling restart (``SIGHUP`` to the supervisor) replaces the workers one by one: the replacement is
started and must finish its start-up before the old worker is told to stop (``SIGTERM``), and the old one
drains: it stops accepting, waits ``DRAIN_SECONDS`` for the requests of connections it accepted a moment ago
to arrive, lets every in-flight request finish (up to ``api_graceful_shutdown_seconds``) and closes idle
keep-alive connections (HTTP/1.1 clients retry a request on a connection the server closed while idle).
A worker that dies is replaced; ``SIGTERM``/``SIGINT`` stop every worker the same graceful way.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import signal
import socket
import threading
import time
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

DRAIN_SECONDS = 0.5  # after it stops accepting, before idle connections are closed
_SPAWN = multiprocessing.get_context("spawn")  # fork would copy the supervisor's threads and sockets state


class DrainingServer(uvicorn.Server):
    """uvicorn's server, which says when it has started and stops accepting before it closes connections."""

    def __init__(self, config: uvicorn.Config, ready: ProcessEvent) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:  # no new connection comes here: the other workers take them
            server.close()
        # a connection accepted just before has not sent its request yet; uvicorn would close it as idle
        await asyncio.sleep(DRAIN_SECONDS)
        await super().shutdown(sockets)


def _run_worker(config: uvicorn.Config, sockets: list[socket.socket], ready: ProcessEvent) -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a restart is the supervisor's business
    config.configure_logging()
    DrainingServer(config, ready).run(sockets=sockets)


class _Worker:
    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        self.ready = _SPAWN.Event()
        self.process = _SPAWN.Process(target=_run_worker, args=(config, sockets, self.ready), daemon=False)
        self.process.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def stop(self, timeout_s: float) -> None:
        """SIGTERM (graceful: drain and finish in-flight requests), SIGKILL past ``timeout_s``."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout_s)
        if self.process.is_alive():
            log.error("API worker %s did not stop within %.0f s; killed", self.pid, timeout_s)
            self.process.kill()
            self.process.join()


class WorkerSupervisor:
    """Runs ``workers`` copies of ``config``'s app on one socket until SIGTERM/SIGINT; SIGHUP restarts them."""

    def __init__(self, config: uvicorn.Config, workers: int, start_timeout_s: float = 60.0) -> None:
        if workers < 1:
            raise ValueError("at least one API worker")
        self.config = config
        self.count = workers
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = (config.timeout_graceful_shutdown or 15) + DRAIN_SECONDS + 5
        self.workers: list[_Worker] = []
        self._stop = threading.Event()
        self._restart = threading.Event()

    def _start(self, sockets: list[socket.socket]) -> _Worker | None:
        return self._started(_Worker(self.config, sockets))

    def _started(self, worker: _Worker) -> _Worker | None:
        """``worker`` once it serves, or None (stopped) if it exits or does not start in time."""
        deadline = time.monotonic() + self.start_timeout_s
        while not worker.ready.wait(0.2):
            if not worker.process.is_alive() or time.monotonic() > deadline or self._stop.is_set():
                log.error("API worker %s did not start (exit code %s); see the log above", worker.pid,
                          worker.process.exitcode)
                worker.stop(1.0)
                return None
        return worker

    def rolling_restart(self, sockets: list[socket.socket]) -> bool:
        """Each worker replaced by a new one that has started; False (old ones kept) if a new one fails."""
        for index, old in enumerate(list(self.workers)):
            if self._stop.is_set():
                return False
            new = self._start(sockets)
            if new is None:
                log.error("rolling restart aborted: worker %s keeps serving", old.pid)
                return False
            old.stop(self.stop_timeout_s)
            self.workers[index] = new
            log.info("API worker %s replaced by %s (%d/%d)", old.pid, new.pid, index + 1, len(self.workers))
        return True

    def _replace_dead(self, sockets: list[socket.socket]) -> None:
        for index, worker in enumerate(self.workers):
            if worker.process.is_alive() or self._stop.is_set():
                continue
            log.warning("API worker %s exited (code %s); starting another", worker.pid, worker.process.exitcode)
            new = self._start(sockets)
            if new is not None:
                self.workers[index] = new

    def run(self) -> None:
        sock = self.config.bind_socket()
        sockets = [sock]
        previous = {sig: signal.signal(sig, handler) for sig, handler in (
            (signal.SIGTERM, lambda *_: self._stop.set()), (signal.SIGINT, lambda *_: self._stop.set()),
            (signal.SIGHUP, lambda *_: self._restart.set()))}
        try:
            starting = [_Worker(self.config, sockets) for _ in range(self.count)]  # side by side
            self.workers = [w for w in (self._started(w) for w in starting) if w is not None]
            if len(self.workers) < self.count:
                raise SystemExit("an API worker failed to start; see the log above")
            log.info("%d API workers serving on %s:%s (SIGHUP: rolling restart)", self.count, self.config.host,
                     self.config.port)
            while not self._stop.wait(0.5):
                if self._restart.is_set():
                    self._restart.clear()
                    log.info("rolling restart of %d API workers", len(self.workers))
                    self.rolling_restart(sockets)
                self._replace_dead(sockets)
        finally:
            stoppers = [threading.Thread(target=w.stop, args=(self.stop_timeout_s,)) for w in self.workers]
            for thread in stoppers:  # all at once: each drains its own in-flight requests
                thread.start()
            for thread in stoppers:
                thread.join()
            sock.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def worker_config(app: str, host: str, port: int, graceful_s: float, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration of a worker: ``app`` is an import string of a factory (each worker builds its own)."""
    return uvicorn.Config(app, factory=True, host=host, port=port, log_level="warning", access_log=False,
                          log_config=None, timeout_graceful_shutdown=math.ceil(graceful_s), **options)
