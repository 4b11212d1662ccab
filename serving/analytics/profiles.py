"""User profiles: per-user properties of a tenant, versioned, joined to the events at query time.

Decision: **query-time join, not enrichment in the stream or the batch layer.** A profile changes after the
events it describes (a user upgrades their plan, a campaign is attributed a day later); enriching events as
they stream would freeze the property as it was when the event arrived and would need the lake restated
after every profile load, while a join when the question is asked answers every range, hot or seven years
back, with the profile as it is now and costs one lookup of one property per question (the users of the
tenant that have a profile: a few MB for a million users). Every version is kept (``user_profiles`` appends
the next version on each upsert), so the history of a profile is there to read; questions use the newest.

Profile properties are named ``profile.<property>`` where a question names a dimension: a funnel step's
filters, a funnel's breakdown and a retention grid's breakdown (``serving/analytics/engine.py`` adds the
looked-up column to the engine's rows). A user without a profile, or without that property, has ``''``.
Values are strings, like the events' dimensions.
"""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from common.hot_store import HotStore
from common.sql_files import sql_sections
from serving.query.spec import QueryError

PREFIX = "profile."
PROPERTY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
PROFILE_FIELD = re.compile(r"^profile\.[a-z][a-z0-9_]{0,63}$")
MAX_USER_ID = 256
MAX_PROPERTIES = 100
MAX_VALUE = 1000
MAX_IMPORT_ROWS = 1_000_000
MAX_KEPT_LOOKUPS = 32  # (tenant, property) lookups kept in memory, the oldest dropped first
_TS = pa.timestamp("ms", tz="UTC")
_SCHEMA = pa.schema([("tenant", pa.string()), ("user_id", pa.string()), ("version", pa.uint64()),
                     ("properties", pa.map_(pa.string(), pa.string())), ("deleted", pa.uint8()), ("updated", _TS),
                     ("source", pa.string())])


class ProfileError(QueryError):
    """A profile (or a file of them) that cannot be accepted; the message says what to send."""


class ProfileNotFound(LookupError):
    pass


def is_profile_field(name: str) -> bool:
    return bool(PROFILE_FIELD.match(name or ""))


def property_of(field: str) -> str:
    return field.removeprefix(PREFIX)


def checked_properties(raw: Mapping[str, Any]) -> dict[str, str | None]:
    """Property names as dimension names go (lower-case, digits, _); values as strings (None removes one)."""
    if not isinstance(raw, Mapping):
        raise ProfileError("properties is an object like {\"plan\": \"pro\", \"campaign\": \"spring\"}")
    if len(raw) > MAX_PROPERTIES:
        raise ProfileError(f"at most {MAX_PROPERTIES} properties per profile")
    out: dict[str, str | None] = {}
    for name, value in raw.items():
        if not PROPERTY.match(str(name)):
            raise ProfileError(f"property name {name!r}: 1-64 lower-case letters, digits and _, starting with a letter")
        if value is None:
            out[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ProfileError(f"property {name!r}: a string or a number, got {value!r}")
        text = str(value)
        if len(text) > MAX_VALUE:
            raise ProfileError(f"property {name!r}: at most {MAX_VALUE} characters")
        out[name] = text
    return out


def checked_user(user_id: Any) -> str:
    if isinstance(user_id, bool) or not isinstance(user_id, str | int) or not str(user_id).strip():
        raise ProfileError(f"user_id must be a non-empty string (or a number), got {user_id!r}")
    text = str(user_id)
    if len(text) > MAX_USER_ID:
        raise ProfileError(f"user_id is longer than {MAX_USER_ID} characters")
    return text


def rows_from_file(data: bytes, kind: str) -> list[tuple[str, dict[str, str | None]]]:
    """(user_id, properties) per row of a CSV (header row) or Parquet file with a ``user_id`` column; every
    other column is a property (empty CSV cells and nulls leave the property as it is)."""
    if kind == "parquet":
        try:
            table = pq.read_table(io.BytesIO(data))
        except Exception as exc:  # pyarrow raises several kinds for a file that is not Parquet
            raise ProfileError(f"the body is not a readable Parquet file: {exc}") from None
        records = table.to_pylist()
        columns = table.column_names
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ProfileError("a CSV file must be UTF-8") from None
        reader = csv.DictReader(io.StringIO(text))
        columns = list(reader.fieldnames or [])
        records = [{k: (v if v != "" else None) for k, v in r.items()} for r in reader]
    if "user_id" not in columns:
        raise ProfileError(f"the file needs a user_id column; it has: {', '.join(columns) or 'none'}")
    if len(records) > MAX_IMPORT_ROWS:
        raise ProfileError(f"at most {MAX_IMPORT_ROWS:,} rows per file; split it")
    out = []
    for i, record in enumerate(records):
        try:
            user = checked_user(record.pop("user_id"))
            props = {k: v for k, v in checked_properties(
                {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in record.items()}).items()
                if v is not None}
        except ProfileError as exc:
            raise ProfileError(f"row {i + 1}: {exc}") from None
        out.append((user, props))
    return out


@dataclass(frozen=True)
class Profile:
    user_id: str
    version: int
    properties: dict[str, str]
    updated: datetime
    source: str

    def as_json(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "version": self.version, "properties": self.properties,
                "updated": self.updated.isoformat().replace("+00:00", "Z"), "source": self.source}


class ProfileStore:
    """Upserts, reads and per-question lookups of a tenant's profiles (blocking: run off the event loop)."""

    def __init__(self, store: HotStore) -> None:
        self._store = store
        self._sql = sql_sections("clickhouse/queries/profiles.sql")
        self._lock = threading.Lock()  # one writer at a time per process: versions are read, then written
        self._lookups: dict[tuple[str, str], tuple[tuple, dict[str, str]]] = {}

    def upsert(self, tenant: str, changes: Iterable[tuple[str, Mapping[str, str | None]]], source: str = "api",
               *, replace: bool = False) -> list[Profile]:
        """Each user's next version: the current properties with ``changes`` merged in (None removes one;
        ``replace`` starts from nothing). A user named twice gets the changes in order, one version."""
        merged: dict[str, dict[str, str | None]] = {}
        for user, props in changes:
            merged.setdefault(user, {}).update(props)
        if not merged:
            return []
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        with self._lock:
            current = self._current(tenant, list(merged))
            rows, saved = [], []
            for user, props in merged.items():
                version, before, gone = current.get(user, (0, {}, True))
                after = {} if replace or gone else dict(before)
                for name, value in props.items():
                    if value is None:
                        after.pop(name, None)
                    else:
                        after[name] = value
                rows.append({"tenant": tenant, "user_id": user, "version": version + 1,
                             "properties": list(after.items()), "deleted": 0, "updated": now, "source": source})
                saved.append(Profile(user, version + 1, after, now, source))
            self._insert(rows)
        return saved

    def delete(self, tenant: str, user_id: str) -> None:
        with self._lock:
            version, _, gone = self._current(tenant, [user_id]).get(user_id, (0, {}, True))
            if gone:
                raise ProfileNotFound(f"no profile of user {user_id!r} for this tenant")
            self._insert([{"tenant": tenant, "user_id": user_id, "version": version + 1, "properties": [],
                           "deleted": 1, "updated": datetime.now(UTC), "source": "api"}])

    def get(self, tenant: str, user_id: str, versions: int = 20) -> tuple[Profile, list[Profile]]:
        """The current profile and its versions, newest first (tombstones included as empty versions)."""
        rows = self._store.query_arrow(self._sql["versions"], {"tenant": tenant, "user_id": user_id,
                                                               "limit": versions}).to_pylist()
        if not rows or rows[0]["deleted"]:
            raise ProfileNotFound(f"no profile of user {user_id!r} for this tenant; PUT /v1/profiles/{user_id} "
                                  "makes one")
        history = [Profile(user_id, int(r["version"]), dict(r["properties"]), _utc(r["updated"]), r["source"])
                   for r in rows]
        return history[0], history

    def property(self, tenant: str, name: str) -> dict[str, str]:
        """``{user_id: value}`` of one property, from each profiled user's newest version. Kept in this process
        while the tenant's profiles do not change (a cheap stamp query checks), since reading a million users'
        property costs about 1.7 s and the same breakdown is asked again and again."""
        stamp = tuple(self._store.query_arrow(self._sql["stamp"], {"tenant": tenant}).to_pylist()[0].values())
        kept = self._lookups.get((tenant, name))
        if kept is not None and kept[0] == stamp:
            return kept[1]
        table = self._store.query_arrow(self._sql["property"], {"tenant": tenant, "name": name})
        values = dict(zip(table["user_id"].to_pylist(), table["value"].to_pylist(), strict=True))
        with self._lock:
            if len(self._lookups) >= MAX_KEPT_LOOKUPS:
                self._lookups.pop(next(iter(self._lookups)))
            self._lookups[(tenant, name)] = (stamp, values)
        return values

    def _current(self, tenant: str, users: list[str]) -> dict[str, tuple[int, dict[str, str], bool]]:
        found: dict[str, tuple[int, dict[str, str], bool]] = {}
        for start in range(0, len(users), 10_000):
            rows = self._store.query_arrow(self._sql["current_versions"], {
                "tenant": tenant, "user_ids": users[start:start + 10_000]}).to_pylist()
            found |= {r["user_id"]: (int(r["newest"]), dict(r["props"]), bool(r["gone"])) for r in rows}
        return found

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), 100_000):
            self._store.insert_arrow("user_profiles", pa.Table.from_pylist(rows[start:start + 100_000],
                                                                           schema=_SCHEMA))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


