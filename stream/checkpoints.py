"""What a streaming query's first start can leave behind when it is cut short, and why it is safe to clear.

Spark (4.1 and later) refuses to run batch 0 of a query whose checkpoint has no offset-log entry yet but
whose ``offsets``, ``commits`` or ``state`` folder is not empty (``STATE_STORE_CHECKPOINT_LOCATION_NOT_EMPTY``,
a guard against two queries sharing a checkpoint). A stream job killed or stopped during its very first
micro-batch leaves exactly that: the temporary file of the offset entry it was writing, its checksum, a
state folder. Every later start then fails at batch 0 until someone deletes the files by hand.

Without a numbered file in ``offsets/`` no micro-batch of the query was ever planned: its sinks never received
a batch and its state holds nothing that was committed, so restarting it from scratch — what Spark does for
a new checkpoint — loses nothing. ``clear_unstarted`` removes those three folders in that case only; a
checkpoint with at least one offset entry is never touched. The folder's other files (the query id in
``metadata``, the Kafka source's starting offsets in ``sources/``) stay.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from common.spark import conf_unless_chosen

#: The folders Spark requires to be empty on a query's first batch.
FIRST_BATCH_FOLDERS = ("offsets", "commits", "state")


def local_folder(checkpoint: str) -> Path | None:
    """The checkpoint as a local folder, or None when it lives elsewhere (``s3a://``, ``hdfs://``…)."""
    if checkpoint.startswith("file:"):
        return Path(checkpoint.removeprefix("file:").removeprefix("//"))
    return None if "://" in checkpoint else Path(checkpoint)


def started(checkpoint: Path) -> bool:
    """True once the query wrote an offset-log entry (a file named by its batch id)."""
    offsets = checkpoint / "offsets"
    return offsets.is_dir() and any(entry.name.isdigit() for entry in offsets.iterdir())


def clear_unstarted(checkpoint: str) -> list[str]:
    """Remove the leftovers of a first start that never wrote an offset entry; returns the files removed
    (relative to the checkpoint), none for a started, empty or non-local checkpoint."""
    folder = local_folder(checkpoint)
    if folder is None or not folder.is_dir() or started(folder):
        return []
    folders = [folder / name for name in FIRST_BATCH_FOLDERS if (folder / name).is_dir()]
    removed = sorted(str(p.relative_to(folder)) for path in folders for p in path.rglob("*") if not p.is_dir())
    if removed:
        for path in folders:
            shutil.rmtree(path)
    return removed


#: Spark's setting for the class that writes every checkpoint file (offset and commit logs, the state's changelogs
#: and snapshots), and the stream's own (``stream/jvm``): a local checkpoint's files written straight, without the
#: checksum file system's ``.crc`` files and the ``chmod`` it forks per file, which made up most of a small
#: micro-batch's checkpoint cost; other schemes as Spark writes them. The session's ``file:`` file system is not
#: changed (that broke RocksDB's snapshots and S3A once: docs/operations.md).
FILE_MANAGER_KEY = "spark.sql.streaming.checkpointFileManagerClass"
DIRECT_FILE_MANAGER = "lakehouse.stream.DirectLocalCheckpointFileManager"


def write_checkpoints_directly(spark) -> str:  # a pyspark SparkSession
    """Use ``DIRECT_FILE_MANAGER`` unless ``LAKEHOUSE_SPARK_CONF`` chose a manager; returns the one in use."""
    return conf_unless_chosen(spark, FILE_MANAGER_KEY, DIRECT_FILE_MANAGER)
