"""Which checkpoints the stream writes without Hadoop's checksum file system (pure logic of ``common.spark``)."""

import pytest

from common.spark import LOCAL_CHECKPOINT_CONF, checkpoint_file_conf


@pytest.mark.parametrize("where", ["/srv/lakehouse/checkpoints", "relative/checkpoints", "file:///srv/checkpoints",
                                   "FILE:/srv/checkpoints"])
def test_local_checkpoints_are_written_straight(where: str) -> None:
    assert checkpoint_file_conf(where, "/srv/lakehouse/lake") == LOCAL_CHECKPOINT_CONF


@pytest.mark.parametrize("where", ["s3a://lake/checkpoints", "s3://lake/checkpoints", "hdfs://nn:8020/checkpoints"])
def test_other_file_systems_keep_sparks_own_manager(where: str) -> None:
    assert checkpoint_file_conf(where, "/srv/lakehouse/lake") == {}


@pytest.mark.parametrize("lake", ["s3://lake/events", "s3a://lake/events"])
def test_a_lake_on_s3_keeps_hadoops_local_file_system(lake: str) -> None:
    # S3A buffers uploads through Hadoop's LocalFileSystem and casts `file:`'s file system to it
    assert checkpoint_file_conf("/srv/lakehouse/checkpoints", lake) == {}


def test_the_returned_settings_are_a_copy() -> None:
    checkpoint_file_conf("/tmp/x", "/tmp/lake")["spark.hadoop.fs.file.impl"] = "changed"
    assert LOCAL_CHECKPOINT_CONF["spark.hadoop.fs.file.impl"] == "org.apache.hadoop.fs.RawLocalFileSystem"
