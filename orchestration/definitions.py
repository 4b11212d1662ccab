"""Dagster's entry point: the one ``Definitions`` object that ``workspace.yaml`` loads.

Dagster is the control plane of the batch layer. Each domain keeps its own assets and checks in its
folder and its own ``defs``; this module merges them with the automation and binds the resources:

* ``archive/``: ``raw_events_archive`` (landing → hourly Parquet archive) and its checks;
* ``rollups/``: ``rollups_hourly`` (PySpark recompute → warm Parquet + hot-tier restatement) and the
  stream-vs-batch drift check;
* ``tiers/``: the daily tier movers, the retention purge and their schedules (``storage_tiers``);
* ``audit/``: the compliance report asset and its ``retention_compliance`` check, daily after the purge;
* ``reports/``: tenants' scheduled dashboard reports (a sensor finds due periods, a job delivers one);
* ``automation.py``: the hourly schedule, the late-landing sensor, the freshness schedule;
* ``resources.py``: ``lakehouse`` (Settings), ``spark``, ``hot_store``.

Steps of a run execute in one process (``in_process_executor``): the assets of an hour run one after
the other anyway, and one process per step would pay Python's and Dagster's start-up for each of the
checks; parallelism comes from running several hours at once (the run queue's limit).

Dependencies point one way: this package calls ``batch``, ``storage_tiers`` and ``common`` (and ``serving``'s
report services, from ``reports/`` only); they never import Dagster.
"""

from __future__ import annotations

import dagster as dg

from orchestration import archive, audit, automation, reports, rollups, tiers
from orchestration.reports.resources import reports_resources
from orchestration.resources import lakehouse_resources
from orchestration.tiers.resources import tiers_resources

_resources = lakehouse_resources()
defs = dg.Definitions.merge(
    archive.defs,
    rollups.defs,
    automation.defs,
    tiers.defs,
    audit.defs,
    reports.defs,
    dg.Definitions(resources={**_resources, **tiers_resources(), **reports_resources(_resources["lakehouse"])},
                   executor=dg.in_process_executor),
)
