"""Where the Spark jobs' extra jars are: the Kafka connector always, the S3A jars for a lake on S3.

The versions are written down once, in the small Maven projects of ``stack/maven/``; the local stack
resolves them with Maven into the cache folder (``stack.maven``), and every jar folder carries a marker
holding its pom's hash (editing a pom re-resolves). Product code (Dagster's Spark resource) only looks
the jars up here, so running a batch job never needs Maven or the dev stack.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from common.settings import REPO_ROOT, Settings

MAVEN_DIR = REPO_ROOT / "stack" / "maven"
MARKER = ".complete"


class SparkJarsMissing(RuntimeError):
    """The jars are not in the cache yet (they are resolved by the local stack, never by a batch job)."""


def pom_path(project: str) -> Path:
    """The pom of ``stack/maven/<project>``."""
    return MAVEN_DIR / project / "pom.xml"


def pom_property(project: str, name: str) -> str:
    """A ``<properties>`` value of a pom, so versions are written down once (in the pom)."""
    match = re.search(rf"<{re.escape(name)}>\s*([^<\s]+)\s*</{re.escape(name)}>", pom_path(project).read_text())
    if match is None:
        raise ValueError(f"{pom_path(project)} has no <{name}> property")
    return match.group(1)


def pom_digest(project: str) -> str:
    """What a complete jar folder's marker holds: the sha256 of the pom it was resolved from."""
    return hashlib.sha256(pom_path(project).read_bytes()).hexdigest()


def jars_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jar"))


def resolved_jars(project: str, folder: Path) -> list[Path] | None:
    """The jars of ``folder`` when it was completely resolved from the current pom of ``project``, else None."""
    marker = folder / MARKER
    if marker.exists() and marker.read_text().strip() == pom_digest(project):
        return jars_in(folder)
    return None


def spark_kafka_folder(settings: Settings) -> Path:
    """Where the Kafka connector jars (and what pyspark lacks for it) are cached."""
    return settings.cache_dir / f"spark-kafka-{pom_property('spark-kafka', 'spark.version')}" / "jars"


def spark_s3_folder(settings: Settings) -> Path:
    """Where the S3A jars (hadoop-aws and the AWS SDK v2 modules it uses) are cached."""
    return settings.cache_dir / f"spark-s3-{pom_property('spark-s3', 'hadoop.version')}" / "jars"


def lake_on_s3(settings: Settings) -> bool:
    """Whether the lake is on S3 (``s3://``/``s3a://``), i.e. Spark needs the S3A jars and settings."""
    return settings.effective_lake_uri.startswith(("s3://", "s3a://"))


def cached_spark_jars(settings: Settings) -> list[Path]:
    """Every extra jar the stream and batch jobs need, from the cache: Kafka always, S3A only for an S3 lake."""
    folders = [("spark-kafka", spark_kafka_folder(settings))]
    if lake_on_s3(settings):
        folders.append(("spark-s3", spark_s3_folder(settings)))
    jars: list[Path] = []
    for project, folder in folders:
        found = resolved_jars(project, folder)
        if found is None:
            raise SparkJarsMissing(
                f"the Spark jars of stack/maven/{project} are not resolved in {folder} yet: run `lakehouse stream` "
                f"or `lakehouse stack up` once (they resolve them with Maven into LAKEHOUSE_CACHE_DIR)"
            )
        jars += found
    return jars


STREAM_OPERATORS_SOURCE = REPO_ROOT / "stream" / "jvm"


def stream_operators_digest() -> str:
    """The hash a built operators jar is kept under: its Java sources and the Spark they are compiled against."""
    import pyspark

    digest = hashlib.sha256(pyspark.__version__.encode())
    for source in sorted(STREAM_OPERATORS_SOURCE.rglob("*.java")):
        digest.update(str(source.relative_to(STREAM_OPERATORS_SOURCE)).encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def stream_operators_jar(settings: Settings) -> Path:
    """Where the stream's own JVM operators (``stream/jvm``, compiled by the local stack) are cached."""
    return settings.cache_dir / "stream-operators" / stream_operators_digest()[:16] / "lakehouse-stream-operators.jar"
