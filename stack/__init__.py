"""Idempotent manager of the local real services (Kafka, MinIO, Redis, and whatever the project
registers later), shared by the CLI (`lakehouse stack up|status|down`), the demo and the test
fixtures. Data, logs and pid files live under ``settings.home``; downloaded or built binaries under
``settings.cache_dir``.
"""

from .kafka import ensure_topics, kafka_service
from .local import local_stack
from .maven import kafka_broker_libs, spark_kafka_jars
from .minio import MINIO_VERSION, ensure_bucket, lake_bucket, minio_binary, minio_service, s3_client
from .net import http_ok, http_ready, port_open, tcp_ready
from .redis import ping as redis_ping
from .redis import redis_service
from .services import ProcessService, ServiceStatus, Stack, State, process_service
from .tools import StackError

__all__ = [
    "MINIO_VERSION",
    "State",
    "ProcessService",
    "ServiceStatus",
    "Stack",
    "StackError",
    "ensure_bucket",
    "ensure_topics",
    "http_ok",
    "http_ready",
    "kafka_broker_libs",
    "kafka_service",
    "lake_bucket",
    "local_stack",
    "minio_binary",
    "minio_service",
    "port_open",
    "process_service",
    "redis_ping",
    "redis_service",
    "s3_client",
    "spark_kafka_jars",
    "tcp_ready",
]
