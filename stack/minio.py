"""The local MinIO (S3 for the lake), built from its Go module.

MinIO's community edition ships as source only, so the binary is built with ``go install`` of one
pinned module version into the cache. That takes minutes cold; Go's module and build caches make
a rebuild (e.g. for a fresh cache folder) much faster, and an existing binary is reused as is.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from common.s3 import s3_client
from common.settings import Settings

from .net import host_port, http_ok, port_open
from .services import ProcessService, process_service
from .tools import Progress, StackError, file_lock, require_tool, run_logged

MINIO_MODULE = "github.com/minio/minio"
#: The one pinned MinIO version (a Go pseudo-version of github.com/minio/minio).
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"


def minio_binary(settings: Settings, progress: Progress = print) -> Path:
    """Path of the MinIO server binary, building it with ``go install`` on first use.

    Built into a temporary GOBIN and moved into place, so an interrupted build is simply redone.
    """
    final_dir = settings.cache_dir / "bin" / f"minio-{MINIO_VERSION}"
    binary = final_dir / "minio"
    if binary.exists() and os.access(binary, os.X_OK):
        return binary
    with file_lock(settings.cache_dir / "locks" / "minio-build.lock"):
        if binary.exists() and os.access(binary, os.X_OK):
            return binary
        go = require_tool("go", "to build MinIO from its Go module")
        progress(f"minio: building {MINIO_MODULE}@{MINIO_VERSION} with `go install` "
                 "(first run only; a few minutes cold)…")
        tmp_bin = settings.cache_dir / "bin" / f".minio-{MINIO_VERSION}.tmp-{os.getpid()}"
        shutil.rmtree(tmp_bin, ignore_errors=True)
        run_logged(
            [go, "install", "-v", f"{MINIO_MODULE}@{MINIO_VERSION}"],
            log_file=settings.cache_dir / "logs" / "minio-build.log",
            progress=progress,
            label="minio",
            env={"GOBIN": str(tmp_bin)},
            heartbeat=20.0,
            failure_hint="`go install` needs network access to proxy.golang.org (or GOPROXY/GOFLAGS set up).",
        )
        final_dir.mkdir(parents=True, exist_ok=True)
        (tmp_bin / "minio").replace(binary)
        shutil.rmtree(tmp_bin, ignore_errors=True)
        progress(f"minio: built {binary}")
        return binary


def lake_bucket(settings: Settings) -> str | None:
    """The bucket of ``lake_uri`` when the lake is on S3, else None (local lake, no bucket)."""
    uri = settings.effective_lake_uri
    if not uri.startswith(("s3://", "s3a://")):
        return None
    return urlsplit(uri).netloc or None


def ensure_bucket(settings: Settings, progress: Progress = print) -> None:
    """Create the lake's bucket when ``lake_uri`` is ``s3://bucket/...`` and the bucket is missing."""
    bucket = lake_bucket(settings)
    if bucket is None:
        return
    from botocore.exceptions import ClientError

    client = s3_client(settings)
    try:
        client.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise StackError(f"minio: cannot check bucket {bucket!r} at {settings.s3_endpoint}: {exc}") from exc
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise StackError(f"minio: cannot create bucket {bucket!r} at {settings.s3_endpoint}: {exc}") from exc
    progress(f"minio: created bucket {bucket}")


def minio_service(settings: Settings, progress: Progress = print) -> ProcessService:
    """The MinIO `ProcessService`; its console listens on the S3 port + 1."""
    host, port = host_port(settings.s3_endpoint, 9000)
    console = f"{host}:{port + 1}"
    data = settings.home / "minio" / "data"
    health = f"http://{host}:{port}/minio/health/live"
    state: dict[str, Path] = {}

    def ready() -> bool:
        if settings.minio_manage:
            return http_ok(health)
        return port_open(host, port)

    def prepare() -> None:
        if not settings.s3_endpoint.startswith("http://"):
            raise StackError(
                f"minio: the local MinIO serves plain http, but LAKEHOUSE_S3_ENDPOINT is {settings.s3_endpoint!r}; "
                "use http://HOST:PORT or set LAKEHOUSE_MINIO_MANAGE=false for an external S3."
            )
        if len(settings.s3_secret_key) < 8 or len(settings.s3_access_key) < 3:
            raise StackError("minio: MinIO needs an access key of 3+ and a secret key of 8+ characters "
                             "(LAKEHOUSE_S3_ACCESS_KEY / LAKEHOUSE_S3_SECRET_KEY).")
        state["binary"] = minio_binary(settings, progress)
        data.mkdir(parents=True, exist_ok=True)

    def command() -> list[str]:
        return [str(state["binary"]), "server", str(data), "--address", f"{host}:{port}",
                "--console-address", console]

    return process_service(
        settings.home,
        "minio",
        command,
        ready,
        settings.s3_endpoint,
        env={
            "MINIO_ROOT_USER": settings.s3_access_key,
            "MINIO_ROOT_PASSWORD": settings.s3_secret_key,
            "MINIO_REGION": settings.s3_region,
            "MINIO_UPDATE": "off",
        },
        managed=settings.minio_manage,
        manage_setting="LAKEHOUSE_MINIO_MANAGE",
        ports=[(host, port), (host, port + 1)],
        prepare=prepare,
        after_ready=lambda: ensure_bucket(settings, progress),
        start_timeout=60.0,
        stop_timeout=15.0,
    )
