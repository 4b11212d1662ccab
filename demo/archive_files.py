"""An hour of events written straight in the archive's shape, for benchmarks and tests of the batch
recompute that should not depend on the stream and the archive job to produce their input."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from common.lake import archive_path, hour_partition
from common.settings import Settings


def write_archive_hour(settings: Settings, hour: datetime, events: pa.Table, files: int) -> list[str]:
    """Sorted by tenant, event, time and split into ``files`` zstd Parquet files, as the archive holds them."""
    folder = Path(archive_path(settings)) / hour_partition(hour)
    folder.mkdir(parents=True, exist_ok=True)
    events = events.sort_by([("tenant", "ascending"), ("event", "ascending"), ("timestamp", "ascending")])
    step = -(-events.num_rows // files)
    paths = []
    for i in range(files):
        path = folder / f"part-{i:05d}.zstd.parquet"
        pq.write_table(events.slice(i * step, step), path, compression="zstd")
        paths.append(str(path))
    return paths
