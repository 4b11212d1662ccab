"""Erasures: what a retention purge removed, kept so that the batch layer never brings it back.

A purge deletes a tenant's rows of an hour or a day from every tier, but the events are also in the
landing zone (the stream's own files), and a late event or a backfill re-archives the hour from there.
Without a record of the erasure the re-archived hour would hold the purged rows again, and from the
archive they would reach the warm rollups and the hot tier. So the purge first records, for each
tenant, the time ranges it erases (an *erasure*, a tombstone); ``batch.archive`` leaves out every
landing row of an erased (tenant, hour), late rows included, and the purge rewrites the landing files
that still hold such rows. The record lives in the lake (``<lake>/compliance/erasures``) beside the data
it governs, so every process that archives reads the same one.

Layout: JSON objects, each ``{"format": …, "erasures": {tenant: [[start, end], …]}}`` with hour-aligned
UTC ranges ``[start, end)``. The set of erasures is the union of every object in the folder: a purge adds
one object, then folds every object it read into one new object and deletes those it folded. Two purges
racing lose nothing (each deletes only what it folded, and a union read twice is the same union).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

import pyarrow.fs as pafs

from common.lake import erasures_path, fs_path, lake_filesystem
from common.lake_io import publish
from common.settings import Settings

FORMAT = "lakehouse.erasures/1"
Ranges = dict[str, list[tuple[datetime, datetime]]]  # tenant → sorted, disjoint [start, end) ranges


def coalesce(ranges: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Sorted, disjoint ranges covering the same instants (touching ranges are joined)."""
    out: list[tuple[datetime, datetime]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def union(*sets: Mapping[str, Iterable[tuple[datetime, datetime]]]) -> Ranges:
    merged: dict[str, list[tuple[datetime, datetime]]] = {}
    for ranges in sets:
        for tenant, spans in ranges.items():
            merged.setdefault(tenant, []).extend(spans)
    return {tenant: coalesce(spans) for tenant, spans in sorted(merged.items())}


def erased_tenants(erasures: Mapping[str, list[tuple[datetime, datetime]]], hour: datetime) -> list[str]:
    """The tenants whose rows of ``[hour, hour + 1 h)`` were erased (ranges are hour-aligned)."""
    hour = hour.astimezone(UTC)
    return sorted(t for t, spans in erasures.items() if any(s <= hour < e for s, e in spans))


def _encode(ranges: Ranges) -> bytes:
    body = {"format": FORMAT, "erasures": {t: [[s.isoformat(), e.isoformat()] for s, e in spans]
                                           for t, spans in ranges.items()}}
    return (json.dumps(body, indent=1) + "\n").encode()


def _decode(body: bytes, name: str) -> Ranges:
    try:
        data = json.loads(body)
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
        return {t: [(datetime.fromisoformat(s).astimezone(UTC), datetime.fromisoformat(e).astimezone(UTC))
                     for s, e in spans] for t, spans in data["erasures"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # refusing is the safe side: archiving without the erasures would bring purged rows back
        raise ValueError(f"the erasure record {name} cannot be read ({exc}); restore it from the lake's "
                         "backup or the audit log's purge records before archiving again") from exc


def _objects(settings: Settings, filesystem: pafs.FileSystem) -> list[str]:
    infos = filesystem.get_file_info(pafs.FileSelector(fs_path(erasures_path(settings)), allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".json")
                  and not i.base_name.startswith("."))


def _read(settings: Settings, filesystem: pafs.FileSystem) -> tuple[Ranges, list[str]]:
    for _ in range(5):
        sets, names = [], []
        try:
            for path in _objects(settings, filesystem):
                with filesystem.open_input_stream(path) as stream:
                    sets.append(_decode(stream.read(), path))
                names.append(path)
        except FileNotFoundError:  # folded and deleted by a concurrent purge after the listing: list again
            continue
        return union(*sets), names
    raise RuntimeError(f"the erasure records under {erasures_path(settings)} kept changing while being read; "
                       "retry once the purge running now has finished")


def read_erasures(settings: Settings, filesystem: pafs.FileSystem | None = None) -> Ranges:
    """Every erasure recorded so far (tenant → ranges); ValueError if a record cannot be read."""
    return _read(settings, filesystem or lake_filesystem(settings))[0]


def record_erasures(settings: Settings, new: Mapping[str, Iterable[tuple[datetime, datetime]]],
                    filesystem: pafs.FileSystem | None = None) -> Ranges:
    """Add ``new`` ranges (before the data is deleted, so a purge stopped half-way cannot let it return);
    returns every erasure recorded, ``new`` included."""
    filesystem = filesystem or lake_filesystem(settings)
    root = fs_path(erasures_path(settings))
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    added = union(new)
    if added:
        publish(filesystem, f"{root}/{stamp}-added.json", _encode(added))
    merged, names = _read(settings, filesystem)
    if len(names) > 1:  # fold: one object to read instead of one per purge
        publish(filesystem, f"{root}/{stamp}-folded.json", _encode(merged))
        for name in names:
            filesystem.delete_file(name)
    return merged


def hour_range(hour: datetime) -> tuple[datetime, datetime]:
    hour = hour.astimezone(UTC)
    return hour, hour + timedelta(hours=1)


def day_range(start: datetime) -> tuple[datetime, datetime]:
    start = start.astimezone(UTC)
    return start, start + timedelta(days=1)
