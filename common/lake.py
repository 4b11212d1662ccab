"""Where each dataset lives in the lake: one URI setting, local folder or ``s3://``, Hive layout."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from common.settings import Settings


def landing_path(settings: Settings) -> str:
    """Raw events as the stream lands them (Spark file sink, ``dt=/hour=`` partitions)."""
    return _join(settings.effective_lake_uri, "landing", "events")


def archive_path(settings: Settings) -> str:
    """Compacted, deduplicated raw events per hour, published with a manifest (batch/archive.py)."""
    return _join(settings.effective_lake_uri, "archive", "events")


def rollups_hourly_path(settings: Settings) -> str:
    """Warm hourly rollups computed by the batch layer (batch/hourly.py)."""
    return _join(settings.effective_lake_uri, "warm", "rollups_hourly")


def hour_partition(hour: datetime) -> str:
    """The Hive partition folder of an hour: ``dt=YYYY-MM-DD/hour=HH`` (UTC)."""
    hour = hour.astimezone(UTC)
    return f"dt={hour:%Y-%m-%d}/hour={hour:%H}"


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def spark_uri(uri: str) -> str:
    """Spark's Hadoop file system reaches S3 through ``s3a://``."""
    return "s3a://" + uri[len("s3://"):] if uri.startswith("s3://") else uri


def committed_files(sink_path: str) -> list[str]:
    """Files that Spark's file sink committed, read from its ``_spark_metadata`` log (local paths).

    Files of micro-batches that failed before committing are not in the log and must be ignored by
    every reader of the landing area: this is what makes the landing exactly-once.
    """
    log_dir = Path(sink_path) / "_spark_metadata"
    if not log_dir.is_dir():
        return []
    batches: dict[int, Path] = {}
    latest_compact = -1
    for entry in log_dir.iterdir():
        stem = entry.name.removesuffix(".compact")
        if not stem.isdigit():
            continue
        batches[int(stem)] = entry
        if entry.name.endswith(".compact"):
            latest_compact = max(latest_compact, int(stem))
    files: dict[str, None] = {}
    for batch_id in sorted(b for b in batches if b >= latest_compact):
        for line in batches[batch_id].read_text().splitlines()[1:]:  # first line is the log version
            record = json.loads(line)
            path = record["path"].removeprefix("file://")
            if record.get("action", "add") == "add":
                files[path] = None
            else:
                files.pop(path, None)
    return list(files)
