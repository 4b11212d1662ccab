"""Jars from Maven Central through the small Maven projects in ``stack/maven/``.

The jars are copied once into ``<cache_dir>`` and reused by every clone and every run: Maven's own
``~/.m2`` already avoids re-downloading, but even a warm ``mvn`` costs seconds of JVM start, so a
marker file (holding the pom's hash, so editing a pom re-resolves) short-cuts it entirely. The
broker's jars and Spark's connector jars live in separate folders because they pull different
``kafka-clients`` versions.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from common.settings import Settings
from common.spark_jars import (
    MARKER,
    jars_in,
    lake_on_s3,
    pom_digest,
    pom_path,
    pom_property,
    resolved_jars,
    spark_kafka_folder,
    spark_s3_folder,
)

from .tools import Progress, StackError, file_lock, require_tool, run_logged


def resolve(project: str, dest: Path, *, cache_dir: Path, progress: Progress, label: str) -> list[Path]:
    """Copy the runtime dependencies of ``stack/maven/<project>`` into ``dest``; return the jars.

    Maven runs on a copy of the pom under the cache so no ``target/`` appears in the source tree
    (which may be read-only once installed). The result is built in a temporary folder and renamed
    into place, so an interrupted download never leaves a half-filled folder marked complete.
    """
    pom = pom_path(project)
    digest = pom_digest(project)
    if (found := resolved_jars(project, dest)) is not None:
        return found
    with file_lock(cache_dir / "locks" / f"maven-{project}.lock"):
        if (found := resolved_jars(project, dest)) is not None:
            return found
        mvn = require_tool("mvn", f"to resolve {project} jars from Maven Central")
        require_tool("java", "to run Maven")
        progress(f"{label}: resolving jars with Maven (first run only)…")
        work = cache_dir / "maven-work" / project
        work.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pom, work / "pom.xml")
        tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        run_logged(
            [mvn, "-B", "dependency:copy-dependencies", f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"],
            log_file=cache_dir / "logs" / f"maven-{project}.log",
            progress=progress,
            label=label,
            cwd=work,
            failure_hint="Maven needs network access to Maven Central (or a mirror in ~/.m2/settings.xml).",
        )
        jars = jars_in(tmp)
        if not jars:
            raise StackError(f"{label}: Maven finished but copied no jars into {tmp}")
        (tmp / MARKER).write_text(digest + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.replace(dest)
        progress(f"{label}: {len(jars)} jars cached in {dest}")
        return jars_in(dest)


def kafka_broker_libs(settings: Settings, progress: Progress = print) -> Path:
    """Folder holding the Kafka broker's jars (for ``java -cp '<folder>/*'``)."""
    version = pom_property("kafka-broker", "kafka.version")
    dest = settings.cache_dir / f"kafka-{version}" / "libs"
    resolve("kafka-broker", dest, cache_dir=settings.cache_dir, progress=progress, label="kafka")
    return dest


def spark_kafka_jars(settings: Settings, progress: Progress = print) -> list[Path]:
    """Jars Spark needs for ``format("kafka")`` that the pyspark wheel does not ship.

    Pass them to Spark as ``spark.jars`` (comma-joined). Only the connector and what pyspark lacks
    (kafka-clients, commons-pool2, the token provider) are copied; the pom excludes jars pyspark
    already has, since two versions of scala-library or slf4j on one classpath break Spark.
    Independent of ``kafka_manage``: the stream job needs them with an external broker too.
    """
    return resolve("spark-kafka", spark_kafka_folder(settings), cache_dir=settings.cache_dir, progress=progress,
                   label="spark-kafka")


def _pyspark_hadoop_version() -> str | None:
    """Hadoop version of the installed pyspark wheel (from its ``hadoop-client-api-*.jar``).

    Found without importing pyspark (cheap, and the stack must not need it); None when pyspark
    is not installed or its jar folder looks different, in which case nothing is checked.
    """
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        return None
    for jar in (Path(spec.origin).parent / "jars").glob("hadoop-client-api-*.jar"):
        return jar.name.removeprefix("hadoop-client-api-").removesuffix(".jar")
    return None


def spark_s3_jars(settings: Settings, progress: Progress = print) -> list[Path]:
    """Jars Spark needs for ``s3a://`` (the lake on S3/MinIO) that the pyspark wheel does not ship.

    hadoop-aws plus the individual AWS SDK v2 modules S3A uses (~13 MB) instead of the SDK's
    ~600 MB ``bundle`` jar; see ``stack/maven/spark-s3/pom.xml``. hadoop-aws must match pyspark's
    own Hadoop exactly (it calls into hadoop-common internals), so a pyspark upgrade that moves
    Hadoop fails here with a clear message rather than later with a ``NoSuchMethodError`` in Spark.
    Pass the jars to Spark with the Kafka ones (``spark_jars`` does both).
    """
    version = pom_property("spark-s3", "hadoop.version")
    shipped = _pyspark_hadoop_version()
    if shipped is not None and shipped != version:
        raise StackError(
            f"spark-s3: pyspark ships Hadoop {shipped} but stack/maven/spark-s3/pom.xml pins hadoop-aws "
            f"{version}; set <hadoop.version> to {shipped} (and <sdk.version> to the AWS SDK v2 version "
            f"hadoop-project {shipped} uses)."
        )
    return resolve("spark-s3", spark_s3_folder(settings), cache_dir=settings.cache_dir, progress=progress,
                   label="spark-s3")


def spark_jars(settings: Settings, progress: Progress = print) -> list[Path]:
    """Every extra jar the stream and batch jobs need: Kafka always, S3A only for an S3 lake.

    The S3 jars are skipped for a local lake so the default setup neither waits for Maven nor puts
    the AWS SDK on Spark's classpath.
    """
    jars = spark_kafka_jars(settings, progress)
    if lake_on_s3(settings):
        jars += spark_s3_jars(settings, progress)
    return jars
