"""Table maintenance on a local lake, no services: compaction leaves every answer as it was (checked against the
rows the test wrote, counted in Python) while the number of live files shrinks; vacuum removes the superseded files
only past the history window; a checkpoint is written; the Dagster asset reports it as metadata."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from common.events import EVENT_ARROW_SCHEMA
from common.lake import archive_path
from common.lake_tables import ARCHIVE_TABLE, append_rows, open_table, partition_files, with_partition_columns
from common.settings import Settings
from storage_tiers.lake.maintenance import maintain_table
from storage_tiers.lake.sql import lake_query

HOURS = [datetime(2026, 3, 1, 9, tzinfo=UTC) + timedelta(hours=h) for h in range(3)]
QUERY = ("SELECT tenant, dt, hour, count(*) AS n, sum(revenue) AS r, count(DISTINCT event_id) AS d FROM events "
         "GROUP BY ALL")


def _events(hour: datetime, batch: int, n: int, tenant: str) -> list[dict]:
    return [{"tenant": tenant, "event": "click", "timestamp": hour + timedelta(seconds=i), "event_id": f"{batch}-{i}",
             "user_id": f"u{i % 5}", "page": "/", "country": "FR", "device": "mobile", "revenue": float(i + batch),
             "properties": "{}", "received_at": hour + timedelta(seconds=i)} for i in range(n)]


@pytest.fixture()
def lake(tmp_path: Path) -> tuple[Settings, list[dict]]:
    """Three hours, each written by six small appends (one file each): what late landings leave behind."""
    settings = Settings(home=tmp_path / "home", tier_policy="")
    written: list[dict] = []
    for batch in range(6):
        for hour in HOURS:
            rows = _events(hour, batch, 10 + batch, "acme" if batch % 2 else "beta")
            written += [{**r, "hour": hour} for r in rows]
            table = with_partition_columns(pa.Table.from_pylist(rows, schema=EVENT_ARROW_SCHEMA), ARCHIVE_TABLE, hour)
            append_rows(settings, ARCHIVE_TABLE, table, "archive", {"rows": len(rows)})
    return settings, written


def _truth(written: list[dict]) -> set[tuple]:
    n, r, ids = Counter(), Counter(), {}
    for row in written:
        key = (row["tenant"], row["hour"].date(), row["hour"].hour)
        n[key] += 1
        r[key] += row["revenue"]
        ids.setdefault(key, set()).add(row["event_id"])
    return {(*k, n[k], r[k], len(ids[k])) for k in n}


def _answers(settings: Settings, **kw) -> set[tuple]:
    return {tuple(row.values()) for row in lake_query(QUERY, settings, **kw).to_pylist()}


def _stored(settings: Settings) -> set[str]:
    return {str(p) for p in Path(archive_path(settings)).rglob("*.parquet") if "_delta_log" not in str(p)}


def test_compaction_keeps_every_answer_and_shrinks_the_files(lake: tuple[Settings, list[dict]]) -> None:
    settings, written = lake
    truth = _truth(written)
    assert _answers(settings) == truth
    before = open_table(settings, ARCHIVE_TABLE).version()
    files_before = partition_files(settings, ARCHIVE_TABLE)
    assert len(files_before) == 18

    result = maintain_table(settings, ARCHIVE_TABLE)  # default history window: superseded files stay

    assert (result.files_before, result.files_after) == (18, 3), result
    assert result.files_compacted == 18 and result.files_written == 3
    assert len(partition_files(settings, ARCHIVE_TABLE)) == 3
    assert result.rows == len(written)
    assert _answers(settings) == truth, "compaction changed an answer"
    assert result.files_vacuumed == 0 and set(files_before) <= _stored(settings), "history window kept them"
    assert _answers(settings, as_of=before) == truth, "the version before compaction is still readable"
    assert result.checkpoint_version == result.version_after
    log = Path(archive_path(settings)) / "_delta_log"
    assert list(log.glob(f"{result.checkpoint_version:020d}.checkpoint*.parquet")), "a checkpoint is written"

    again = maintain_table(settings, ARCHIVE_TABLE, history=timedelta(0))  # nothing left to compact; vacuum now
    assert again.files_compacted == 0 and again.files_vacuumed == 18
    assert _stored(settings) == set(partition_files(settings, ARCHIVE_TABLE)), "only the live files remain"
    assert _answers(settings) == truth


def test_the_maintenance_asset_reports_what_it_did(lake: tuple[Settings, list[dict]]) -> None:
    from orchestration.resources import LakehouseResource
    from orchestration.tiers.assets import lake_maintenance
    from orchestration.tiers.resources import TiersResource

    settings, written = lake
    lakehouse = LakehouseResource.from_settings(settings)
    result = dg.materialize([lake_maintenance],
                            resources={"lakehouse": lakehouse, "tiers": TiersResource(lakehouse=lakehouse)})
    assert result.success
    metadata = result.asset_materializations_for_node("lake_maintenance")[0].metadata
    assert metadata["files_before"].value == 18 and metadata["files_after"].value == 3
    assert metadata["history_hours"].value == 7 * 24  # the tier policy's vacuum.history
    tables = {t["table"]: t for t in metadata["tables"].value}
    assert tables["archive/events"]["rows"] == len(written)
    assert tables["warm/rollups_hourly"]["notes"] == ["no table yet"]
    assert _answers(settings) == _truth(written)
