"""An hour of events written straight in the archive's shape, for benchmarks and tests of the batch
recompute that should not depend on the stream and the archive job to produce their input."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from common.lake_tables import ARCHIVE_TABLE, partition_files, replace_partition, with_partition_columns
from common.settings import Settings


def write_archive_hour(settings: Settings, hour: datetime, events: pa.Table, files: int) -> list[str]:
    """Sorted by tenant, event, time and committed to the archive table as the hour (split into about ``files``
    files by appending slices in the same commit's data), as the archive holds them."""
    events = events.sort_by([("tenant", "ascending"), ("event", "ascending"), ("timestamp", "ascending")])
    step = -(-events.num_rows // max(files, 1))
    batches = [b for i in range(files) for b in with_partition_columns(
        events.slice(i * step, step), ARCHIVE_TABLE, hour).to_batches()]
    schema = with_partition_columns(events.slice(0, 0), ARCHIVE_TABLE, hour).schema
    replace_partition(settings, ARCHIVE_TABLE, hour, pa.Table.from_batches(batches, schema), "archive",
                      {"rows": events.num_rows, "written_by": "demo.archive_files"})
    return partition_files(settings, ARCHIVE_TABLE, [hour])
