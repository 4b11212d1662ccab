"""The rollups domain: the archive's exact hourly recompute, written warm and restated into the hot tier."""

from __future__ import annotations

import dagster as dg

from orchestration.rollups.assets import rollups_hourly

defs = dg.Definitions(assets=[rollups_hourly])
