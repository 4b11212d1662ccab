"""Small lake helpers the archive, the tier movers and the compliance code share: list, read and publish files on
a local or S3 lake alike."""

from __future__ import annotations

import hashlib
import io
import json
import os
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from common.lake import MANIFEST_NAME, fs_path


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def publish(filesystem: pafs.FileSystem, path: str, body: bytes) -> None:
    """Write a whole object atomically: one PUT on S3, write-then-rename locally."""
    if isinstance(filesystem, pafs.S3FileSystem):
        with filesystem.open_output_stream(path) as sink:
            sink.write(body)
        return
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    staged = f"{folder}/.{os.path.basename(path)}.{os.getpid()}.tmp"
    with open(staged, "wb") as out:
        out.write(body)
        out.flush()
        os.fsync(out.fileno())
    os.replace(staged, path)


def parquet_bytes(table: pa.Table, compression: str, sorting: list[str] | None = None) -> bytes:
    sink = io.BytesIO()
    options: dict[str, Any] = {"compression": None if compression == "none" else compression,
                               "row_group_size": 131_072}
    if sorting:
        options["sorting_columns"] = pq.SortingColumn.from_ordering(table.schema, [(c, "ascending") for c in sorting])
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def read_json(filesystem: pafs.FileSystem, path: str) -> dict[str, Any] | None:
    try:
        with filesystem.open_input_stream(path) as stream:
            return json.loads(stream.read())
    except FileNotFoundError:
        return None


def read_bytes(filesystem: pafs.FileSystem, path: str) -> bytes | None:
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        return None


def data_files(filesystem: pafs.FileSystem, folder: str) -> list[str]:
    """Parquet data files directly in ``folder`` (never ``_``/``.`` files such as manifests or Spark markers)."""
    infos = filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")
                  and not i.base_name.startswith(("_", ".")))


def read_tables(filesystem: pafs.FileSystem, paths: list[str], schema: pa.Schema | None = None) -> pa.Table | None:
    tables = [pq.read_table(p, filesystem=filesystem) for p in paths]
    if schema is not None:
        tables = [t.select(schema.names).cast(schema) for t in tables]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="default")


def delete_folder(filesystem: pafs.FileSystem, folder: str) -> int:
    """Delete a partition folder with everything in it; returns the bytes removed."""
    infos = filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True, recursive=True))
    size = sum(i.size or 0 for i in infos if i.type == pafs.FileType.File)
    if infos or filesystem.get_file_info(folder).type == pafs.FileType.Directory:
        filesystem.delete_dir(folder)
    return size


def partition_days(filesystem: pafs.FileSystem, root_uri: str) -> list[date]:
    """The ``dt=YYYY-MM-DD`` folders under a dataset root, as dates."""
    infos = filesystem.get_file_info(pafs.FileSelector(fs_path(root_uri), allow_not_found=True))
    days = []
    for info in infos:
        if info.type == pafs.FileType.Directory and info.base_name.startswith("dt="):
            try:
                days.append(date.fromisoformat(info.base_name[3:]))
            except ValueError:
                continue
    return sorted(days)


def partition_hours(filesystem: pafs.FileSystem, root_uri: str, day: date) -> list[datetime]:
    """The ``hour=HH`` folders of one day under a dataset root, as UTC hours."""
    folder = f"{fs_path(root_uri)}/dt={day.isoformat()}"
    infos = filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    hours = []
    for info in infos:
        if info.type == pafs.FileType.Directory and info.base_name.startswith("hour="):
            hours.append(day_start(day) + timedelta(hours=int(info.base_name[5:])))
    return sorted(hours)


def manifest_of(filesystem: pafs.FileSystem, folder: str) -> dict[str, Any] | None:
    return read_json(filesystem, f"{folder}/{MANIFEST_NAME}")

