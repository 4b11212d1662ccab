"""The default local stack (Kafka, MinIO, Redis) built from the settings."""

from __future__ import annotations

from common.settings import Settings

from .kafka import kafka_services
from .minio import minio_service
from .redis import redis_service
from .services import Stack
from .tools import Progress


def local_stack(settings: Settings, progress: Progress = print) -> Stack:
    """The stack `lakehouse stack up|status|down` manages, in start order.

    Services whose ``*_manage`` setting is false are still listed, as external: `up` checks that
    they answer (and creates topics/bucket), `down` leaves them alone. Register the API/hot node
    and the stream job on the returned stack to manage them the same way.
    """
    return Stack(
        settings.home,
        [*kafka_services(settings, progress), minio_service(settings, progress), redis_service(settings, progress)],
        progress=progress,
    )
