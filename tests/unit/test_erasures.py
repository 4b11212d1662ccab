"""The erasure record (common/erasures.py) on a temporary local lake: ranges, folding, refusal of a bad record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from common.erasures import coalesce, erased_tenants, read_erasures, record_erasures
from common.lake import erasures_path
from common.settings import Settings

H = datetime(2026, 1, 10, 5, tzinfo=UTC)


def _h(n: int) -> datetime:
    return H + timedelta(hours=n)


def test_ranges_coalesce_when_they_touch_or_overlap_and_stay_apart_otherwise() -> None:
    assert coalesce([(_h(2), _h(3)), (_h(0), _h(1)), (_h(1), _h(2)), (_h(5), _h(6))]) == [(_h(0), _h(3)),
                                                                                           (_h(5), _h(6))]


def test_a_tenant_is_erased_only_for_the_hours_its_ranges_cover() -> None:
    erasures = {"acme": [(_h(0), _h(24))], "beta": [(_h(3), _h(4))]}
    assert erased_tenants(erasures, _h(3)) == ["acme", "beta"]
    assert erased_tenants(erasures, _h(4)) == ["acme"]
    assert erased_tenants(erasures, _h(24)) == []
    assert erased_tenants(erasures, _h(-1)) == []


def test_records_of_several_purges_fold_into_one_object_and_lose_nothing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    assert read_erasures(settings) == {}
    record_erasures(settings, {"acme": [(_h(0), _h(1))]})
    record_erasures(settings, {"acme": [(_h(1), _h(2))], "beta": [(_h(9), _h(10))]})
    merged = record_erasures(settings, {"gamma": [(_h(0), _h(24))]})
    assert merged == {"acme": [(_h(0), _h(2))], "beta": [(_h(9), _h(10))], "gamma": [(_h(0), _h(24))]}
    assert read_erasures(settings) == merged
    assert len(list(Path(erasures_path(settings)).glob("*.json"))) == 1


def test_an_unreadable_record_is_an_error_not_an_empty_set(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    record_erasures(settings, {"acme": [(_h(0), _h(1))]})
    (Path(erasures_path(settings)) / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot be read"):
        read_erasures(settings)
