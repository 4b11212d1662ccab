"""Which de-duplication an existing hot checkpoint was started with, read from its state metadata (``stream.dedup``):
the stream keeps that way whatever ``LAKEHOUSE_STREAM_DEDUP`` says, since the two keep their state in different
shapes. The metadata files' contents are Spark's own (operator metadata v1 for Spark's operator, v2 for
``transformWithState``), trimmed to what is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.dedup import checkpoint_dedup

SPARKS = 'v1\n{"operatorInfo":{"operatorId":0,"operatorName":"dedupeWithinWatermark"},"stateStoreInfo":[]}'
BUCKETS = 'v2\n{"operatorInfo":{"operatorId":0,"operatorName":"transformWithStateExec"},"stateStoreInfo":[]}'


def checkpoint_with(tmp_path: Path, name: str, text: str) -> Path:
    metadata = tmp_path / "hot" / "state" / "0" / "_metadata" / name
    metadata.parent.mkdir(parents=True)
    metadata.write_text(text)
    return tmp_path / "hot"


@pytest.mark.parametrize(("name", "text", "way"), [("metadata", SPARKS, "spark"), ("v2/0", BUCKETS, "buckets")])
def test_the_way_is_read_from_the_operator_name(tmp_path: Path, name: str, text: str, way: str) -> None:
    hot = checkpoint_with(tmp_path, name, text)
    assert checkpoint_dedup(str(hot)) == way
    assert checkpoint_dedup(f"file:{hot}") == way


def test_no_state_yet_or_a_checkpoint_elsewhere_tells_nothing(tmp_path: Path) -> None:
    assert checkpoint_dedup(str(tmp_path / "hot")) is None
    (tmp_path / "hot" / "offsets").mkdir(parents=True)
    assert checkpoint_dedup(str(tmp_path / "hot")) is None
    assert checkpoint_dedup("s3a://bucket/checkpoints/hot") is None
