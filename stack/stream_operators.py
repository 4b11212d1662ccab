"""The stream's own JVM operators (``stream/jvm``), compiled once against the installed pyspark's jars.

A few lines of Java, not a Maven project: Maven would download Spark's whole dependency tree again only to
compile against it, while the pyspark wheel already holds every jar needed. The jar is cached under a hash of the
sources and of pyspark's version (``common.spark_jars.stream_operators_jar``), so editing a source or upgrading
pyspark rebuilds it, and every clone sharing the cache reuses it.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from common.settings import Settings
from common.spark_jars import STREAM_OPERATORS_SOURCE, stream_operators_jar

from .tools import Progress, StackError, file_lock, require_tool, run_logged


def _pyspark_jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def build_stream_operators(settings: Settings, progress: Progress = print) -> Path:
    """The operators jar, compiled with ``javac`` (JDK 17+) when the cache has none for these sources."""
    jar = stream_operators_jar(settings)
    if jar.exists():
        return jar
    with file_lock(settings.cache_dir / "locks" / "stream-operators.lock"):
        if jar.exists():
            return jar
        javac = require_tool("javac", "to compile the stream's operators (stream/jvm) once; a JDK, not only a JRE")
        sources = sorted(str(p) for p in STREAM_OPERATORS_SOURCE.rglob("*.java"))
        classes = jar.parent / f".classes-{os.getpid()}"
        shutil.rmtree(classes, ignore_errors=True)
        classes.mkdir(parents=True)
        progress(f"stream operators: compiling {len(sources)} Java source(s) into {jar}")
        run_logged([javac, "--release", "17", "-nowarn", "-d", str(classes), "-cp", f"{_pyspark_jars()}/*", *sources],
                   log_file=settings.cache_dir / "logs" / "stream-operators.log", progress=progress,
                   label="stream operators")
        built = sorted(p for p in classes.rglob("*.class"))
        if not built:
            raise StackError(f"stream operators: javac wrote no classes into {classes}")
        tmp = jar.with_name(f".{jar.name}.tmp-{os.getpid()}")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in built:
                archive.write(path, path.relative_to(classes).as_posix())
        tmp.replace(jar)
        shutil.rmtree(classes, ignore_errors=True)
        return jar
