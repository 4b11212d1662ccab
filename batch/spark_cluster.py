"""A throwaway Spark standalone cluster (one master, one worker) started from the pyspark wheel.

The batch jobs run on any ``spark.master``; this is how a test or a benchmark proves it on a real
standalone cluster without a Spark distribution: the wheel has no ``start-master.sh``, but its
``bin/spark-class`` launches the master and worker main classes, which is all those scripts do.
Both processes run in their own process groups, log into ``log_dir`` and bind to 127.0.0.1, so a
cluster never collides with the local stack or with another cluster (ports are picked free).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pyspark

from common import procfs


def free_port() -> int:
    """A port nobody listens on now (the OS picks it), so parallel runs do not collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class StandaloneCluster:
    """``with StandaloneCluster(tmp) as cluster: Settings(spark_master=cluster.master_url)``."""

    work_dir: Path
    cores: int = 1
    memory: str = "1g"
    start_timeout_s: float = 90.0
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    webui_port: int = field(default_factory=free_port)
    worker_webui_port: int = field(default_factory=free_port)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False, repr=False)

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.port}"

    @property
    def webui_url(self) -> str:
        return f"http://{self.host}:{self.webui_port}"

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def driver_conf(self) -> str:
        """``LAKEHOUSE_SPARK_CONF`` for a driver on this machine: executors must reach it on loopback,
        and an executor may not ask for more memory than the worker offers (it would never start)."""
        return (f"spark.driver.host={self.host};spark.driver.bindAddress={self.host};"
                f"spark.executor.memory={self.memory};spark.executor.cores={self.cores}")

    def status(self) -> dict[str, Any]:
        """The master's own view (workers, active and completed applications) from its web UI JSON."""
        with urllib.request.urlopen(f"{self.webui_url}/json", timeout=5) as response:  # loopback
            return json.load(response)

    def start(self) -> StandaloneCluster:
        """Start master then worker; return once the worker is registered and ALIVE, or raise with the logs."""
        java = shutil.which("java")
        if java is None and not os.environ.get("JAVA_HOME"):
            raise RuntimeError("java was not found: install Java 17 or set JAVA_HOME, then retry")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        spark_home = Path(pyspark.__file__).resolve().parent
        env = {
            **os.environ,
            "SPARK_HOME": str(spark_home),
            "SPARK_LOCAL_IP": self.host,
            "SPARK_LOCAL_DIRS": str(self.work_dir / "local"),
            "SPARK_LOG_DIR": str(self.log_dir),
            "PYSPARK_PYTHON": sys.executable,
        }
        if "JAVA_HOME" not in env and java is not None:
            env["JAVA_HOME"] = str(Path(java).resolve().parents[1])
        spark_class = str(spark_home / "bin" / "spark-class")
        self._spawn("master", env, [spark_class, "org.apache.spark.deploy.master.Master", "--host", self.host,
                                    "--port", str(self.port), "--webui-port", str(self.webui_port)])
        self._spawn("worker", env, [spark_class, "org.apache.spark.deploy.worker.Worker", self.master_url,
                                    "--host", self.host, "--cores", str(self.cores), "--memory", self.memory,
                                    "--webui-port", str(self.worker_webui_port),
                                    "--work-dir", str(self.work_dir / "worker")])
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"a Spark standalone process exited with {proc.returncode}; "
                                       f"see its log in {self.log_dir}")
            try:
                if self.status().get("aliveworkers", 0) >= 1:
                    return self
            except OSError:
                pass  # master's web UI not up yet
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"no Spark worker registered with {self.master_url} within {self.start_timeout_s:.0f}s; "
                           f"see the logs in {self.log_dir}")

    def _spawn(self, name: str, env: dict[str, str], cmd: list[str]) -> None:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            # own session → own process group, so stop() reaches the JVM and anything it forked
            self._procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True))

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the worker's then the master's process group; SIGKILL whatever outlives ``timeout_s``.

        The wait is for every process of each group (the executors the worker forked too), not only
        for the JVM we started, which may exit first and leave its children running.
        """
        for proc in reversed(self._procs):
            _signal_group(proc, signal.SIGTERM)
        for proc in reversed(self._procs):
            if not _wait_group(proc, timeout_s):
                _signal_group(proc, signal.SIGKILL)
                _wait_group(proc, 10)
        self._procs.clear()

    def __enter__(self) -> StandaloneCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _wait_group(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait until ``proc`` and every other member of its group are gone; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None or (procfs.available() and procfs.group_members(proc.pid)):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the child's pid
