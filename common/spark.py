"""One Spark configuration for the stream and batch jobs: local mode by default, any master by setting."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from pyspark.sql import SparkSession

from common.settings import Settings


def spark_session(settings: Settings, app_name: str, jars: Sequence[str] = ()) -> SparkSession:
    """A session for ``app_name``; ``jars`` are extra jars such as Spark's Kafka connector.

    Python workers must run this interpreter (the project's venv), not whatever ``python3`` is first
    on the PATH, or they fail to import pyarrow and the project's modules.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(settings.spark_master)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.streaming.stateStore.providerClass",
                "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.driver.memory", "2g")
    )
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    for key, value in settings.spark_extra_conf().items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
