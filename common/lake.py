"""Where each dataset lives in the lake: one URI setting, local folder or ``s3://``, Hive layout.

Every reader and writer outside Spark reaches the lake through ``lake_filesystem`` (a pyarrow file
system for the lake URI) and ``fs_path`` (a URI → that file system's path), so the same code runs on
the local embedded lake and on S3/MinIO. Paths handed around between stages are lake URIs: a plain
local path, or ``s3://bucket/key`` (Spark's ``s3a://`` only inside Spark, see ``spark_uri``).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow.fs as pafs

from common.settings import Settings

MANIFEST_NAME = "_manifest.json"
_HOUR_FOLDER = re.compile(r"/dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/[^/]+$")


def landing_path(settings: Settings) -> str:
    """Raw events as the stream lands them (Spark file sink, ``dt=/hour=`` partitions)."""
    return _join(settings.effective_lake_uri, "landing", "events")


def archive_path(settings: Settings) -> str:
    """The archive of raw events: a Delta table partitioned by ``dt``/``hour`` (batch/archive.py)."""
    return _join(settings.effective_lake_uri, "archive", "events")


def rollups_hourly_path(settings: Settings) -> str:
    """Warm hourly rollups computed by the batch layer: a Delta table partitioned by ``dt``/``hour_of_day``."""
    return _join(settings.effective_lake_uri, "warm", "rollups_hourly")


def cold_events_path(settings: Settings) -> str:
    """Cold raw events, compacted per day: a Delta table partitioned by ``dt`` (storage_tiers/tiers/cold_files.py)."""
    return _join(settings.effective_lake_uri, "cold", "events")


def rollups_daily_path(settings: Settings) -> str:
    """Cold daily rollups, one day per commit: a Delta table partitioned by ``dt``."""
    return _join(settings.effective_lake_uri, "cold", "rollups_daily")


def day_sketches_path(settings: Settings) -> str:
    """Per tenant and UTC day: exact events, revenue and users, and mergeable distinct-user sketches (a Delta table
    partitioned by ``dt``, storage_tiers/tiers/day_sketches.py): what long ranges are answered from."""
    return _join(settings.effective_lake_uri, "cold", "day_sketches")


def month_sketches_path(settings: Settings) -> str:
    """Per tenant, complete month and dimension value: the month's day sketches merged into one row (a Delta table
    partitioned by ``month``, storage_tiers/tiers/month_sketches.py): what totals over long ranges read."""
    return _join(settings.effective_lake_uri, "cold", "month_sketches")


def audit_log_path(settings: Settings) -> str:
    """The tier audit log: one JSON object per record, ``<12-digit seq>.json`` (storage_tiers.compliance.audit_log)."""
    return _join(settings.effective_lake_uri, "audit", "log")


def erasures_path(settings: Settings) -> str:
    """What retention purges erased (tenant, time range), which the archive never brings back (common/erasures.py)."""
    return _join(settings.effective_lake_uri, "compliance", "erasures")


def purge_runs_path(settings: Settings) -> str:
    """The plans of retention purges under way (storage_tiers/tiers/purge.py): one left behind was interrupted."""
    return _join(settings.effective_lake_uri, "compliance", "purge-runs")


def hour_partition(hour: datetime) -> str:
    """The Hive partition folder of an hour: ``dt=YYYY-MM-DD/hour=HH`` (UTC)."""
    hour = hour.astimezone(UTC)
    return f"dt={hour:%Y-%m-%d}/hour={hour:%H}"


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def spark_uri(uri: str) -> str:
    """Spark's Hadoop file system reaches S3 through ``s3a://``."""
    return "s3a://" + uri[len("s3://"):] if uri.startswith("s3://") else uri


def is_s3(uri: str) -> bool:
    """Whether ``uri`` is on S3 (``s3://`` as the settings spell it, or Spark's ``s3a://``)."""
    return uri.startswith(("s3://", "s3a://"))


def fs_path(uri: str) -> str:
    """The path of a lake URI inside its pyarrow file system (``lake_filesystem``).

    ``s3://bucket/key`` and ``s3a://bucket/key`` → ``bucket/key``; ``file:///x`` and ``/x`` → ``/x``.
    """
    if is_s3(uri):
        return uri.split("://", 1)[1].rstrip("/")
    if uri.startswith("file:"):
        uri = unquote(urlsplit(uri).path)
    return str(Path(uri).absolute())


def lake_uri(filesystem: pafs.FileSystem, path: str) -> str:
    """The inverse of ``fs_path``: the lake URI of ``path`` inside ``filesystem``."""
    return f"s3://{path}" if isinstance(filesystem, pafs.S3FileSystem) else path


def lake_filesystem(settings: Settings) -> pafs.FileSystem:
    """A pyarrow file system for ``settings.effective_lake_uri``: local, or S3 configured from Settings.

    For S3 the values come from ``LAKEHOUSE_S3_*`` only. With an endpoint (MinIO or any S3-compatible
    store) requests go there, path-style (pyarrow's default unless virtual addressing is forced), over
    http or https as the endpoint says. Without an access key pyarrow's default credential chain is
    used (environment, ``~/.aws``, instance metadata), which is what production on AWS wants.
    """
    if not is_s3(settings.effective_lake_uri):
        return pafs.LocalFileSystem()
    options: dict[str, Any] = {"region": settings.s3_region}
    endpoint = settings.s3_endpoint.strip()
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"LAKEHOUSE_S3_ENDPOINT {endpoint!r} must look like http(s)://host:port")
        options |= {"endpoint_override": parts.netloc, "scheme": parts.scheme}
    if settings.s3_access_key:
        options |= {"access_key": settings.s3_access_key, "secret_key": settings.s3_secret_key}
    return pafs.S3FileSystem(**options)


def _from_spark_uri(path: str) -> str:
    """A path as Spark's sink log records it → a lake URI (``file:///x`` → ``/x``, ``s3a://`` → ``s3://``).

    Hadoop writes paths as URIs, so characters such as spaces arrive percent-encoded.
    """
    if path.startswith("s3a://"):
        return "s3://" + unquote(path[len("s3a://"):])
    if path.startswith("file:"):
        return unquote(urlsplit(path).path)
    return path


def committed_files(sink_path: str, filesystem: pafs.FileSystem | None = None) -> list[str]:
    """Files that Spark's file sink committed, read from its ``_spark_metadata`` log.

    Files of micro-batches that failed before committing are not in the log and must be ignored by
    every reader of the landing area: this is what makes the landing exactly-once.

    ``sink_path`` is a lake URI. A local sink needs no ``filesystem`` and yields local paths (as
    before); an ``s3://`` sink needs ``lake_filesystem(settings)`` and yields ``s3://bucket/key`` URIs.
    The log holds a ``N.compact`` file every few batches (all files up to batch N) and one file per
    later batch; only those are read.
    """
    if filesystem is None:
        if is_s3(sink_path):
            raise ValueError(f"committed_files({sink_path!r}) needs filesystem=lake_filesystem(settings) for S3")
        filesystem = pafs.LocalFileSystem()
    log_dir = f"{fs_path(sink_path)}/_spark_metadata"
    entries = filesystem.get_file_info(pafs.FileSelector(log_dir, allow_not_found=True))
    batches: dict[int, str] = {}
    latest_compact = -1
    for entry in entries:
        if entry.type != pafs.FileType.File:
            continue
        stem = entry.base_name.removesuffix(".compact")
        if not stem.isdigit():
            continue
        batches[int(stem)] = entry.path
        if entry.base_name.endswith(".compact"):
            latest_compact = max(latest_compact, int(stem))
    files: dict[str, None] = {}
    for batch_id in sorted(b for b in batches if b >= latest_compact):
        with filesystem.open_input_stream(batches[batch_id]) as stream:
            text = stream.read().decode("utf-8")
        for line in text.splitlines()[1:]:  # first line is the log version
            if not line.strip():
                continue
            record = json.loads(line)
            path = _from_spark_uri(record["path"])
            if record.get("action", "add") == "add":
                files[path] = None
            else:
                files.pop(path, None)
    return list(files)


def file_hour(path: str) -> datetime | None:
    """The hour of a file inside a ``dt=YYYY-MM-DD/hour=HH/`` folder (UTC), or None elsewhere."""
    match = _HOUR_FOLDER.search(path)
    if match is None:
        return None
    return datetime.strptime(f"{match[1]} {match[2]}", "%Y-%m-%d %H").replace(tzinfo=UTC)


def landing_files_by_hour(settings: Settings, filesystem: pafs.FileSystem | None = None) -> dict[datetime, list[str]]:
    """Committed landing files grouped by the hour folder they were landed in (sorted, UTC hours).

    The stream partitions the landing by each event's own time, so a late event lands in its hour's
    folder as a new file: comparing an hour's list with the ``landing_files`` its archive commit recorded
    (``unarchived_landing_files``) tells which hours must be archived again. Files outside an hour
    folder (e.g. Spark's ``__HIVE_DEFAULT_PARTITION__`` for a null time) are left out.
    """
    filesystem = filesystem or lake_filesystem(settings)
    by_hour: dict[datetime, list[str]] = {}
    for path in committed_files(landing_path(settings), filesystem):
        hour = file_hour(path)
        if hour is not None:
            by_hour.setdefault(hour, []).append(path)
    return {hour: sorted(files) for hour, files in sorted(by_hour.items())}


def unarchived_landing_files(
    settings: Settings, since: datetime | None = None, filesystem: pafs.FileSystem | None = None
) -> dict[datetime, list[str]]:
    """Hours whose committed landing files are not all in their archive commit, with the missing files.

    An hour never archived lists all its files; an archived hour that received late events lists the
    new ones. This is what a sensor needs to re-run the archive for exactly those hours. ``since``
    skips older hours (the archive table's history is read back to the oldest hour checked).
    """
    from common.lake_tables import ARCHIVE_TABLE, hour_provenance

    filesystem = filesystem or lake_filesystem(settings)
    by_hour = {h: f for h, f in landing_files_by_hour(settings, filesystem).items() if since is None or h >= since}
    provenance = hour_provenance(settings, ARCHIVE_TABLE, by_hour)
    out: dict[datetime, list[str]] = {}
    for hour, files in by_hour.items():
        archived = set(provenance.get(hour, {}).get("landing_files", []))
        missing = [f for f in files if f not in archived]
        if missing:
            out[hour] = missing
    return out
