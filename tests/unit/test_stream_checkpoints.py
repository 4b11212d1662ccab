"""A first start cut short is cleared; a checkpoint that ever planned a micro-batch is never touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.checkpoints import clear_unstarted, local_folder


def make(folder: Path, files: list[str]) -> None:
    for name in files:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")


def all_files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("debris", [
    ["offsets/.0.5f1c-77aa.tmp"],  # the offset entry of batch 0 being written when the job died
    ["offsets/..0.5f1c-77aa.tmp.crc"],
    ["commits/.0.9e.tmp"],
    ["state/0/0/_metadata/schema", "state/0/_metadata/metadata"],
])
def test_the_leftovers_of_a_first_start_are_cleared_and_the_rest_kept(tmp_path: Path, debris: list[str]) -> None:
    kept = ["metadata", "sources/0/0"]  # the query id and the Kafka source's starting offsets
    make(tmp_path, debris + kept)
    assert clear_unstarted(str(tmp_path)) == sorted(debris)
    assert all_files(tmp_path) == set(kept)
    assert clear_unstarted(str(tmp_path)) == []


@pytest.mark.parametrize("files", [
    ["offsets/0", "offsets/.0.crc", "state/0/0/1.zip"],  # batch 0 planned, not committed: Spark replays it
    ["offsets/0", "offsets/1", "offsets/.2.aa.tmp", "commits/0", "state/0/0/1.changelog"],
])
def test_a_started_checkpoint_is_never_touched(tmp_path: Path, files: list[str]) -> None:
    make(tmp_path, ["metadata", *files])
    assert clear_unstarted(str(tmp_path)) == []
    assert all_files(tmp_path) == {"metadata", *files}


def test_empty_missing_and_remote_checkpoints_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "offsets").mkdir()
    assert clear_unstarted(str(tmp_path)) == []
    assert (tmp_path / "offsets").is_dir()
    assert clear_unstarted(str(tmp_path / "never-started")) == []
    assert clear_unstarted("s3a://bucket/checkpoints/hot") == []
    assert local_folder("s3a://bucket/checkpoints/hot") is None
    assert local_folder(f"file://{tmp_path}") == tmp_path
    assert local_folder(str(tmp_path)) == tmp_path
