"""The S3 client of the product code: boto3, path-style addressing (as MinIO expects), a few retries.

The tier movers tag cold objects, the audit log appends with conditional PUTs and the inventory reads
object tags through it; the local stack creates its bucket with the same client.
"""

from __future__ import annotations

from typing import Any

from common.settings import Settings


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for ``settings.s3_endpoint`` (path-style, as MinIO expects)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key,
        region_name=settings.s3_region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}, connect_timeout=5),
    )
