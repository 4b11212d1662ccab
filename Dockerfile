# syntax=docker/dockerfile:1
# The project's image. docker-compose.yml runs four containers from it: the API + hot node
# (`lakehouse serve`), the stream job (`lakehouse stream`), and Dagster's webserver and daemon;
# each is configured only through LAKEHOUSE_* variables (see the settings table in docs/operations.md).
#
# Bookworm rather than the default trixie tag: Spark runs on Java 17, and Debian 13 ships no openjdk-17.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Java for Spark (the pyspark wheel brings Spark itself). The man folder is missing in slim images
# and openjdk's post-install step wants it.
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, in a layer that survives code changes: pyproject's [project].dependencies.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# Where the containers keep state (stream checkpoints, ready files) and the jar cache.
ENV LAKEHOUSE_HOME=/var/lib/lakehouse \
    LAKEHOUSE_CACHE_DIR=/opt/lakehouse/cache

# Spark's Kafka connector and S3A jars (not in the pyspark wheel), resolved at build time with the same code
# and poms the local stack uses (stack/maven/spark-kafka, spark-s3), so `lakehouse stream` finds them cached and
# needs neither Maven nor network at run time. Maven is removed again in the same layer.
COPY common/ common/
COPY stack/ stack/
RUN apt-get update \
 && apt-get install -y --no-install-recommends maven \
 && LAKEHOUSE_LAKE_URI=s3://prefetch python -c "from common.settings import Settings; from stack.maven import spark_jars; spark_jars(Settings())" \
 && apt-get purge -y --auto-remove maven \
 && rm -rf /var/lib/apt/lists/* /root/.m2 \
           "$LAKEHOUSE_CACHE_DIR/maven-work" "$LAKEHOUSE_CACHE_DIR/locks" "$LAKEHOUSE_CACHE_DIR/logs"

# The stream's own JVM operators (stream/jvm), compiled once against the installed pyspark's jars with the same
# code the local stack uses (stack/stream_operators.py); the JDK is removed again in the same layer.
COPY stream/jvm/ stream/jvm/
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jdk-headless \
 && python -c "from common.settings import Settings; from stack.stream_operators import build_stream_operators; build_stream_operators(Settings())" \
 && apt-get purge -y --auto-remove openjdk-17-jdk-headless \
 && rm -rf /var/lib/apt/lists/* "$LAKEHOUSE_CACHE_DIR/locks" "$LAKEHOUSE_CACHE_DIR/logs"

# The project, installed in editable mode from /app: common/settings.py finds sql/ (and the stack's
# poms) next to the packages, at the parent of the `common` package, so the source tree stays here.
COPY . .
RUN pip install --no-deps -e . \
 && useradd --create-home --uid 10001 lakehouse \
 && mkdir -p "$LAKEHOUSE_HOME" /opt/dagster/home \
 && python -c "from pathlib import Path; from orchestration.instance import prepare_dagster_home; prepare_dagster_home(Path('/opt/dagster/home'))" \
 && chown -R lakehouse "$LAKEHOUSE_HOME" /opt/dagster/home

USER lakehouse
ENV DAGSTER_HOME=/opt/dagster/home
EXPOSE 18000 3000
CMD ["lakehouse", "serve"]
