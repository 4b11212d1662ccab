"""The archive domain: landing files → compacted, deduplicated hourly Parquet with a manifest."""

from __future__ import annotations

import dagster as dg

from orchestration.archive.assets import raw_events_archive
from orchestration.archive.checks import (
    archive_files_match_commit,
    archive_is_fresh,
    archive_rows_match_landing,
    archive_schema_conforms,
)

defs = dg.Definitions(
    assets=[raw_events_archive],
    asset_checks=[archive_rows_match_landing, archive_schema_conforms, archive_files_match_commit,
                  archive_is_fresh],
)
