"""Dagster's entry point: the one ``Definitions`` object that ``workspace.yaml`` loads.

Dagster is the control plane of the batch layer. Each domain keeps its own assets and checks in its
folder and its own ``defs``; this module merges them with the automation and binds the resources:

* ``archive/``: ``raw_events_archive`` (landing → hourly Parquet archive) and its checks;
* ``rollups/``: ``rollups_hourly`` (PySpark recompute → warm Parquet + hot-tier restatement) and the
  stream-vs-batch drift check;
* ``tiers/``: the daily tier movers, the retention purge and their schedules (``storage_tiers``);
* ``audit/``: the compliance report asset and its ``retention_compliance`` check, daily after the purge;
* ``automation.py``: the hourly schedule, the late-landing sensor, the freshness schedule;
* ``resources.py``: ``lakehouse`` (Settings), ``spark``, ``hot_store``.

Steps of a run execute in one process (``in_process_executor``): the assets of an hour run one after
the other anyway, and one process per step would pay Python's and Dagster's start-up for each of the
checks; parallelism comes from running several hours at once (the run queue's limit).

Dependencies point one way: this package calls ``batch``, ``common`` and ``stack``; they never import Dagster.
"""

from __future__ import annotations

import dagster as dg

from orchestration import archive, audit, automation, rollups, tiers
from orchestration.resources import lakehouse_resources
from orchestration.tiers.resources import tiers_resources

defs = dg.Definitions.merge(
    archive.defs,
    rollups.defs,
    automation.defs,
    tiers.defs,
    audit.defs,
    dg.Definitions(resources={**lakehouse_resources(), **tiers_resources()}, executor=dg.in_process_executor),
)
