"""The stream's own JVM classes (``stream/jvm``, compiled by ``lakehouse stream``), looked up with a clear error."""

from __future__ import annotations

from functools import reduce

from py4j.java_gateway import JavaClass
from pyspark.sql import SparkSession


def stream_class(spark: SparkSession, name: str, otherwise: str = "") -> JavaClass:
    """The class ``name`` (``lakehouse.stream.…``) from Spark's classpath. py4j answers a package for a class it
    cannot load, which would fail later with an obscure message; this says what to do (``otherwise``: another way)."""
    found = reduce(getattr, name.split("."), spark.sparkContext._jvm)
    if not isinstance(found, JavaClass):
        raise RuntimeError(f"the stream's {name} is not on Spark's classpath: start the stream with `lakehouse stream` "
                           f"(it compiles stream/jvm once){otherwise}")
    return found
