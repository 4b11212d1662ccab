"""The local Redis (the API's query cache): Debian's ``redis-server`` with a config we write."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from common.settings import Settings

from .services import ProcessService, process_service
from .tools import Progress, StackError


def redis_server_binary(progress: Progress = print) -> str:
    """Path of ``redis-server``, installing Debian's package when we are root and it is missing.

    The Makefile installs it too; doing it here as well means `stack up` works on a fresh
    container. Anywhere else (no apt-get, not root) the error says what to run.
    """
    path = shutil.which("redis-server")
    if path:
        return path
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        progress("redis: redis-server missing, running `apt-get install -y redis-server`…")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = [apt, "install", "-y", "--no-install-recommends", "redis-server"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run([apt, "update"], env=env, capture_output=True, text=True)
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        path = shutil.which("redis-server")
        if path:
            return path
    raise StackError(
        "redis: `redis-server` not found on PATH. Install it with `sudo apt-get install -y redis-server` "
        "(Debian/Ubuntu), `brew install redis` (macOS), or point LAKEHOUSE_REDIS_URL at an existing Redis "
        "and set LAKEHOUSE_REDIS_MANAGE=false."
    )


def redis_config(settings: Settings, data: Path) -> str:
    """redis.conf for the local cache.

    No snapshots or AOF: it only holds a query cache, so persistence would cost disk writes for
    nothing. Logs go to stdout (the stack's log file); the stack, not Redis, daemonizes.
    """
    parts = urlsplit(settings.redis_url)
    host = parts.hostname or "127.0.0.1"
    bind = socket.gethostbyname(host)
    lines = [
        "# Written by `lakehouse stack up` from LAKEHOUSE_REDIS_URL; edits are overwritten.",
        f"bind {bind}",
        f"port {parts.port or 6379}",
        f"dir {data}",
        "daemonize no",
        'logfile ""',
        'save ""',
        "appendonly no",
        "protected-mode yes",
    ]
    if parts.password:
        lines.append(f"requirepass {parts.password}")
    return "\n".join(lines) + "\n"


def ping(url: str) -> bool:
    """True when Redis at ``url`` answers PING."""
    import redis as redis_client

    try:
        client = redis_client.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis_client.RedisError, OSError):
        return False


def redis_service(settings: Settings, progress: Progress = print) -> ProcessService:
    """The Redis `ProcessService` (managed or external according to ``settings.redis_manage``)."""
    parts = urlsplit(settings.redis_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    home = settings.home / "redis"
    config = home / "redis.conf"
    state: dict[str, str] = {}

    def prepare() -> None:
        if parts.scheme != "redis":
            raise StackError(f"redis: the local Redis speaks plain redis://, but LAKEHOUSE_REDIS_URL is "
                             f"{settings.redis_url!r}; set LAKEHOUSE_REDIS_MANAGE=false for an external one.")
        state["binary"] = redis_server_binary(progress)
        (home / "data").mkdir(parents=True, exist_ok=True)
        config.write_text(redis_config(settings, home / "data"))

    return process_service(
        settings.home,
        "redis",
        lambda: [state["binary"], str(config)],
        lambda: ping(settings.redis_url),
        f"{host}:{port}",
        managed=settings.redis_manage,
        manage_setting="LAKEHOUSE_REDIS_MANAGE",
        ports=[(host, port)],
        prepare=prepare,
        start_timeout=30.0,
        stop_timeout=10.0,
    )
