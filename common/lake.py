"""Where each dataset lives in the lake: one URI setting, local folder or ``s3://``, Hive layout."""

from __future__ import annotations

from common.settings import Settings


def landing_path(settings: Settings) -> str:
    """Raw events as the stream lands them (Spark file sink, ``dt=/hour=`` partitions)."""
    return _join(settings.effective_lake_uri, "landing", "events")


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def spark_uri(uri: str) -> str:
    """Spark's Hadoop file system reaches S3 through ``s3a://``."""
    return "s3a://" + uri[len("s3://"):] if uri.startswith("s3://") else uri
