"""Dagster resources: what the batch layer's assets get from their environment, built from ``Settings``.

The same three resource keys exist everywhere (UI, daemon runs, tests, production); what differs is
the one ``Settings`` object they are built from, which reads the ``LAKEHOUSE_*`` environment once.
No other module of the orchestration reads the environment.

* ``lakehouse`` (``LakehouseResource``): the settings, i.e. the lake's URI and every endpoint.
* ``spark`` (``SparkResource``): a Spark session for the hourly recompute, local by default and any
  cluster through ``LAKEHOUSE_SPARK_MASTER``, with the jars of ``common.spark_jars.cached_spark_jars``. It starts
  only when an asset asks for it (about 9 s), so the archive step never pays for it.
* ``hot_store`` (``HotStoreResource``): the hot tier through ``open_hot_store``. With embedded chDB
  only the hot node may open the data folder, so runs reach it over Arrow Flight; the resource checks
  that the hot node answers before any work starts and says how to start it if not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, PrivateAttr

from common.hot_store import FlightHotStore, HotStore, HotStoreError, open_hot_store
from common.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class LakehouseResource(dg.ConfigurableResource):
    """The project's ``Settings``: environment (``LAKEHOUSE_*``) plus optional overrides for this code location."""

    overrides: dict[str, str] = Field(
        default_factory=dict,
        description="Settings fields to override, by field name (e.g. {'lake_uri': 's3://lake/prod'}); "
        "everything else comes from the LAKEHOUSE_* environment of the process that runs the step.",
    )
    _settings: Settings | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, settings: Settings) -> LakehouseResource:
        """A resource that reproduces ``settings`` exactly (every field that differs from its default)."""
        values = settings.model_dump(mode="json", exclude_defaults=True)
        return cls(overrides={name: _text(value) for name, value in values.items()})

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings(**self.overrides)
        return self._settings


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class SparkResource(dg.ConfigurableResource):
    """A Spark session for the batch jobs, started on first use and stopped when the step ends."""

    lakehouse: LakehouseResource
    app_name: str = Field(default="lakehouse-batch", description="Spark application name (seen in the Spark UI).")
    _session: SparkSession | None = PrivateAttr(default=None)
    _owned: bool = PrivateAttr(default=False)

    def session(self) -> SparkSession:
        if self._session is None:
            from pyspark.sql import SparkSession

            from common.spark import spark_session
            from common.spark_jars import cached_spark_jars

            settings = self.lakehouse.settings()
            already_running = SparkSession.getActiveSession() is not None
            log = dg.get_dagster_logger()
            jars = [str(path) for path in cached_spark_jars(settings)]
            log.info(f"starting Spark ({settings.spark_master}) for {self.app_name}")
            self._session = spark_session(settings, self.app_name, jars)
            self._owned = not already_running
        return self._session

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        # A session this resource did not start (a notebook's, a test's) is left running.
        if self._session is not None and self._owned:
            self._session.stop()
        self._session = None


class HotStoreResource(dg.ConfigurableResource):
    """The hot tier (ClickHouse) as the ``HotStore`` interface, opened once per step."""

    lakehouse: LakehouseResource
    _store: HotStore | None = PrivateAttr(default=None)

    def store(self) -> HotStore:
        if self._store is None:
            settings = self.lakehouse.settings()
            try:
                store = open_hot_store(settings)
            except HotStoreError as exc:
                raise dg.Failure(description=str(exc)) from exc
            if isinstance(store, FlightHotStore) and not store.ping():
                store.close()
                raise dg.Failure(
                    description=(
                        f"the hot node is not reachable at {settings.hot_node_url}. The hot tier is embedded chDB, "
                        "which only the hot node may open, so Dagster runs reach it over Arrow Flight: start it with "
                        "`lakehouse stack up` (or `lakehouse serve`), or set LAKEHOUSE_HOT_NODE_URL to where it runs, "
                        "or LAKEHOUSE_CLICKHOUSE_DSN to a ClickHouse server."
                    )
                )
            self._store = store
        return self._store

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._store is not None:
            self._store.close()
        self._store = None


def lakehouse_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources of the code location; with ``settings``, pinned to them (tests, notebooks)."""
    lakehouse = LakehouseResource.from_settings(settings) if settings is not None else LakehouseResource()
    return {
        "lakehouse": lakehouse,
        "spark": SparkResource(lakehouse=lakehouse),
        "hot_store": HotStoreResource(lakehouse=lakehouse),
    }
