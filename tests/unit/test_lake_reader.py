"""The lake reader's narrowing and executor, and the compiler's lake piece: globs of the range's days only,
file lists and user values as parameters, timeouts interrupt the thread's cursor, clear refusals."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest

from common.settings import Settings
from serving.query.engine import QueryEngine, QueryTimeout
from serving.query.spec import QueryError, SpecInput, build_spec
from serving.query.sql_compile import compile_segment
from serving.query.tier_routing import Horizons, plan
from storage_tiers.lake.reader import (
    DATASETS,
    LakeQueryTimeout,
    LakeRollupReader,
    day_range,
    range_globs,
)

NOW = datetime(2024, 3, 8, tzinfo=UTC)


def _globs(tmp_path: Path, first: date, last: date, dataset: str = "rollups_hourly") -> list[str]:
    settings = Settings(home=tmp_path, lake_uri=str(tmp_path / "lake"))
    return [g.rsplit("/dt=", 1)[1] for g in range_globs(DATASETS[dataset], settings, first, last)]


def test_globs_cover_only_the_range_days(tmp_path: Path) -> None:
    assert _globs(tmp_path, date(2026, 11, 12), date(2026, 11, 12)) == ["2026-11-12/*/*.parquet"]
    assert _globs(tmp_path, date(2026, 11, 1), date(2026, 11, 9), "rollups_daily") == ["2026-11-0*/*.parquet"]
    assert _globs(tmp_path, date(2026, 10, 25), date(2026, 11, 3)) == ["2026-10-*/*/*.parquet",
                                                                       "2026-11-0*/*/*.parquet"]
    assert _globs(tmp_path, date(2025, 12, 30), date(2026, 1, 2)) == ["2025-12-3*/*/*.parquet",
                                                                      "2026-01-0*/*/*.parquet"]
    assert _globs(tmp_path, date(2025, 11, 20), date(2026, 11, 19)) == ["202*/*/*.parquet"]  # one wide glob


def test_the_day_range_is_half_open_and_naive_means_utc() -> None:
    assert day_range(datetime(2024, 3, 1), datetime(2024, 3, 3)) == (date(2024, 3, 1), date(2024, 3, 2))
    assert day_range(datetime(2024, 3, 1, 5, tzinfo=UTC), datetime(2024, 3, 3, 0, 1, tzinfo=UTC)) == (
        date(2024, 3, 1), date(2024, 3, 3))


def test_the_lake_piece_reads_the_relation_with_files_and_values_as_parameters() -> None:
    crafted = "x' OR 1=1 --"
    spec = build_spec(SpecInput(["events", "unique_users"], range="2d", granularity="hour", dimensions=["country"],
                                filters=[{"field": "device", "op": "=", "value": crafted},
                                         {"field": "page", "op": "in", "values": ["/", crafted]}], tier="warm"),
                      now=NOW)
    (segment,) = plan(spec, NOW, Horizons())
    relation = ("lake_rollups_hourly($lake_files)", {"lake_files": ["/lake/warm/rollups_hourly/dt=2024-03-0*/*/*"]})
    sql, params = compile_segment(spec, segment, crafted, whole=True, relation=relation)
    assert "FROM lake_rollups_hourly($lake_files)" in sql and crafted not in sql
    assert params["lake_files"] == relation[1]["lake_files"] and params["tenant"] == crafted
    assert "dt BETWEEN $first_day AND $last_day" in sql
    assert (params["first_day"], params["last_day"]) == (date(2024, 3, 6), date(2024, 3, 7))
    assert "coalesce(country, '') AS country" in sql and "GROUP BY bucket, coalesce(country, '')" in sql


def test_a_timeout_interrupts_only_that_threads_cursor(tmp_path: Path) -> None:
    reader = LakeRollupReader(Settings(home=tmp_path), connection_factory=lambda _settings: duckdb.connect())
    try:
        with pytest.raises(LakeQueryTimeout, match="longer than 0.3 s"):
            reader.execute("SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3", {}, 0.3)
        assert reader.execute("SELECT 42 AS answer", {}, 5).to_pylist() == [{"answer": 42}]  # still usable
        cursors = []
        thread = threading.Thread(target=lambda: cursors.append(reader._cursor()))
        thread.start()
        thread.join()
        assert cursors[0] is not reader._cursor()  # one cursor per thread
    finally:
        reader.close()


def test_the_engine_turns_a_lake_timeout_into_query_timeout(tmp_path: Path) -> None:
    class SlowReader(LakeRollupReader):
        def execute(self, sql: str, params: dict, timeout_seconds: float):  # type: ignore[override]
            return super().execute("SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3", {}, 0.2)

        def relation(self, dataset, start, end, *, fresh=False):  # type: ignore[override]
            return DATASETS[dataset].empty(), {}

    reader = SlowReader(Settings(home=tmp_path), connection_factory=lambda _settings: duckdb.connect())
    spec = build_spec(SpecInput(["events"], range="2d", tier="cold"), now=NOW)
    try:
        with pytest.raises(QueryTimeout, match="cancelled"):
            QueryEngine(None, reader, timeout_seconds=0.2).run("acme", spec, NOW)
    finally:
        reader.close()


def test_an_engine_without_a_tier_says_so() -> None:
    hot = build_spec(SpecInput(["events"], range="1h", tier="hot"), now=NOW)
    with pytest.raises(QueryError, match="no hot tier"):
        QueryEngine(None, None).run("acme", hot, NOW)
    cold = build_spec(SpecInput(["events"], range="30d", tier="cold"), now=NOW)
    with pytest.raises(QueryError, match="lake queries are off"):
        QueryEngine(None, None).run("acme", cold, NOW)


def test_an_unknown_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="known: rollups_hourly, rollups_daily"):
        LakeRollupReader(Settings(home=tmp_path)).files("events", NOW, NOW)
