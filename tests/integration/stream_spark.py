"""A Spark session for tests that run the stream's own sinks and operators (``stream/jvm``) outside the stream job."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import SparkSession

from common.settings import Settings
from common.spark import spark_session
from stack.stream_operators import build_stream_operators
from stream.landing import land_without_sorting


def stream_spark_session(settings: Settings, name: str, jars: Sequence[str] = ()) -> SparkSession:
    """``spark_session`` with the stream's operators jar (compiled once per cache, as ``lakehouse stream`` does) and
    its landing's writes (``land_without_sorting``).

    In a JVM an earlier module launched, ``spark.jars`` reaches the tasks but not the driver's class loader, which a
    stream job's own JVM has them in from its start: ``ADD JAR`` puts them there too."""
    jars = [*jars, str(build_stream_operators(settings))]
    session = spark_session(settings, name, jars)
    land_without_sorting(session)
    for jar in jars:
        session.sql(f"ADD JAR '{jar}'")
    return session
