"""One Spark configuration for the stream and batch jobs: local mode by default, any master by setting."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from pyspark.sql import SparkSession

from common.settings import Settings
from common.spark_jars import lake_on_s3
from common.spark_watchdog import watched_launch

#: How the stream's de-duplication state (RocksDB) commits a micro-batch, measured by ``bench.stream_dedup``: a
#: changelog of the batch's writes instead of a flush and an upload of new SST files at every commit (a snapshot
#: every few batches, in the background), and no read before each write to count the state's rows (the count is
#: a metric only: the progress log then shows no key count). Together they cut the state's JVM CPU time from
#: about 8 to about 3 µs per event. Neither is pinned in a checkpoint: RocksDB reads a checkpoint written either
#: way, so existing checkpoints restart as they are, and ``LAKEHOUSE_SPARK_CONF`` can set either back.
STATE_STORE_CONF = {
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
    "spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows": "false",
}


def spark_session(
    settings: Settings, app_name: str, jars: Sequence[str] = (), scheduler_pools: Path | None = None
) -> SparkSession:
    """A session for ``app_name``; ``jars`` are extra jars such as Spark's Kafka connector;
    ``scheduler_pools`` is a FAIR scheduler allocation file (jobs that share the cores by priority).

    When the lake is on S3 (``s3://``), the session is also set up for Hadoop's S3A file system
    (see ``s3a_conf``); ``jars`` must then include the S3A jars (``common.spark_jars``).
    ``LAKEHOUSE_SPARK_CONF`` is applied last, so any of these settings can be overridden.

    Python workers must run this interpreter (the project's venv), not whatever ``python3`` is first
    on the PATH, or they fail to import pyarrow and the project's modules.

    The driver JVM is launched under a watchdog (``common.spark_watchdog``), so it does not outlive
    this Python process however that process ends.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(settings.spark_master)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        # Standard UTC timestamps in Parquet (not legacy INT96), so pyarrow/pandas/DuckDB read them as UTC.
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.streaming.stateStore.providerClass",
                "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.driver.memory", "2g")
    )
    for key, value in STATE_STORE_CONF.items():
        builder = builder.config(key, value)
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    if scheduler_pools is not None:
        builder = builder.config("spark.scheduler.mode", "FAIR").config(
            "spark.scheduler.allocation.file", str(scheduler_pools)
        )
    if lake_on_s3(settings):
        for key, value in s3a_conf(settings).items():
            builder = builder.config(key, value)
    for key, value in settings.spark_extra_conf().items():
        builder = builder.config(key, value)
    with watched_launch():
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def conf_unless_chosen(spark: SparkSession, key: str, value: str) -> str:
    """Set ``key`` to the project's ``value`` in a running session unless it was set already (``LAKEHOUSE_SPARK_CONF``
    is applied at the session's start, so an operator's choice wins); returns the value in use."""
    chosen = spark.conf.get(key, None)
    if not chosen:
        spark.conf.set(key, value)
        chosen = value
    return chosen


def s3a_conf(settings: Settings) -> dict[str, str]:
    """Spark settings that point Hadoop's S3A file system at ``settings``' S3 (MinIO locally).

    Values come from Settings only (``LAKEHOUSE_S3_*``), never from code. With an endpoint (MinIO,
    any S3-compatible store): path-style addressing, because MinIO serves ``host/bucket/key`` and
    virtual-host names like ``bucket.127.0.0.1`` do not resolve; TLS on or off from the endpoint's
    scheme, since S3A would otherwise try https against MinIO's plain-http port. The region is set
    explicitly so S3A signs for it instead of probing AWS for the bucket's region. Without an
    endpoint (real AWS S3) S3A uses AWS's regional endpoint with virtual-host addressing. Without an
    access key, S3A's default credential chain is kept (instance profile, web identity, env vars),
    which is what production on AWS wants.
    """
    conf: dict[str, str] = {"spark.hadoop.fs.s3a.endpoint.region": settings.s3_region}
    endpoint = settings.s3_endpoint.strip()
    if endpoint:
        scheme = urlsplit(endpoint).scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"LAKEHOUSE_S3_ENDPOINT {endpoint!r} must start with http:// or https://")
        conf |= {
            "spark.hadoop.fs.s3a.endpoint": endpoint,
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": "true" if scheme == "https" else "false",
        }
    if settings.s3_access_key:
        conf |= {
            "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
            "spark.hadoop.fs.s3a.access.key": settings.s3_access_key,
            "spark.hadoop.fs.s3a.secret.key": settings.s3_secret_key,
        }
    return conf
