"""Jars from Maven Central through the small Maven projects in ``stack/maven/``.

The jars are copied once into ``<cache_dir>`` and reused by every clone and every run: Maven's own
``~/.m2`` already avoids re-downloading, but even a warm ``mvn`` costs seconds of JVM start, so a
marker file (holding the pom's hash, so editing a pom re-resolves) short-cuts it entirely. The
broker's jars and Spark's connector jars live in separate folders because they pull different
``kafka-clients`` versions.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from common.settings import Settings

from .tools import Progress, StackError, file_lock, require_tool, run_logged

MAVEN_DIR = Path(__file__).resolve().parent / "maven"
MARKER = ".complete"


def pom_path(project: str) -> Path:
    """The pom of ``stack/maven/<project>``, shipped as package data."""
    return MAVEN_DIR / project / "pom.xml"


def pom_property(project: str, name: str) -> str:
    """A ``<properties>`` value of a pom, so versions are written down once (in the pom)."""
    match = re.search(rf"<{re.escape(name)}>\s*([^<\s]+)\s*</{re.escape(name)}>", pom_path(project).read_text())
    if match is None:
        raise StackError(f"{pom_path(project)} has no <{name}> property")
    return match.group(1)


def _jars(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jar"))


def resolve(project: str, dest: Path, *, cache_dir: Path, progress: Progress, label: str) -> list[Path]:
    """Copy the runtime dependencies of ``stack/maven/<project>`` into ``dest``; return the jars.

    Maven runs on a copy of the pom under the cache so no ``target/`` appears in the source tree
    (which may be read-only once installed). The result is built in a temporary folder and renamed
    into place, so an interrupted download never leaves a half-filled folder marked complete.
    """
    pom = pom_path(project)
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    marker = dest / MARKER
    if marker.exists() and marker.read_text().strip() == digest:
        return _jars(dest)
    with file_lock(cache_dir / "locks" / f"maven-{project}.lock"):
        if marker.exists() and marker.read_text().strip() == digest:
            return _jars(dest)
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
        jars = _jars(tmp)
        if not jars:
            raise StackError(f"{label}: Maven finished but copied no jars into {tmp}")
        (tmp / MARKER).write_text(digest + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.replace(dest)
        progress(f"{label}: {len(jars)} jars cached in {dest}")
        return _jars(dest)


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
    version = pom_property("spark-kafka", "spark.version")
    dest = settings.cache_dir / f"spark-kafka-{version}" / "jars"
    return resolve("spark-kafka", dest, cache_dir=settings.cache_dir, progress=progress, label="spark-kafka")


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
    dest = settings.cache_dir / f"spark-s3-{version}" / "jars"
    return resolve("spark-s3", dest, cache_dir=settings.cache_dir, progress=progress, label="spark-s3")


def lake_on_s3(settings: Settings) -> bool:
    """Whether the lake is on S3 (``s3://``/``s3a://``), i.e. Spark needs the S3A jars and settings."""
    return settings.effective_lake_uri.startswith(("s3://", "s3a://"))


def spark_jars(settings: Settings, progress: Progress = print) -> list[Path]:
    """Every extra jar the stream and batch jobs need: Kafka always, S3A only for an S3 lake.

    The S3 jars are skipped for a local lake so the default setup neither waits for Maven nor puts
    the AWS SDK on Spark's classpath.
    """
    jars = spark_kafka_jars(settings, progress)
    if lake_on_s3(settings):
        jars += spark_s3_jars(settings, progress)
    return jars
