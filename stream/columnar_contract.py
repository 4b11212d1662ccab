"""The event contract's common case judged a whole Arrow batch at a time: one shortcut, no second rule.

The per-event path (``common.events.events_of_record``: dictionaries in, dictionaries out) costs about
9 µs per event in the stream's Python workers, and every Kafka record is judged by each of the
stream's queries. Most records are what the API writes: JSON arrays of events that are already in
the normalized form. For those, this module checks every rule of ``normalize_event`` on Arrow
columns at once (type, length, the event-name pattern, canonical timestamps and their bounds) and
takes the values as they are, which is what ``normalize_event`` returns for an event in normalized
form.

It only ever *accepts*. A record with one event that fails any check here, or that holds anything
this shortcut does not handle (unknown fields, a missing ``event_id``, an integer ``user_id``, a
non-canonical time, a boolean ``revenue`` …), goes whole through ``events_of_record``, which gives the
same events and the rejections with their reasons. The checks here are at least as strict as the
per-event rules, so an event accepted here is one ``normalize_event`` accepts, with the same output;
``tests/unit/test_columnar_contract.py`` compares the two paths on valid, broken and mixed records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from common.events import EVENT_ARROW_SCHEMA, EVENT_NAME, MAX_PROPERTIES_CHARS, MAX_TEXT, format_ts

# Fields an event of the fast path may carry: the normalized form (received_at included), nothing else.
FAST_FIELDS = frozenset(EVENT_ARROW_SCHEMA.names)
_TEXT_FIELDS = tuple(name for name in EVENT_ARROW_SCHEMA.names if name != "revenue")
# RE2 reads ``$`` as the end of the text (Python's ``re`` also allows a final newline): stricter, as needed.
_EVENT_NAME_RE2 = EVENT_NAME.pattern
_CANONICAL_RE2 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
_MAX_EXACT_FLOAT = 2.0**53  # integers beyond this are not all exact as doubles: left to the per-event path
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class FastEvents:
    """The events accepted in bulk: normalized columns, plus each event's record (row) and index in it."""

    columns: dict[str, pa.Array]
    rows: pa.Array
    indices: pa.Array

    @property
    def num_rows(self) -> int:
        return len(self.rows)


def plain_items(parsed: Any) -> list[dict] | None:
    """The events of a parsed record when each is a dict with only normalized-form fields and no boolean
    ``revenue`` (Arrow would read ``True`` as 1.0 next to numbers); None sends the record to the per-event path."""
    items = [parsed] if type(parsed) is dict else parsed if type(parsed) is list else None
    if not items:
        return None
    for item in items:
        if type(item) is not dict or not item.keys() <= FAST_FIELDS or type(item.get("revenue")) is bool:
            return None
    return items


def _micros(ts: datetime) -> int:
    """Microseconds since the epoch, exactly (datetime comparisons are exact to the microsecond)."""
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _text_column(struct: pa.StructArray, name: str) -> pa.Array | None:
    """The field as strings (all null when absent), or None when its values are not all strings."""
    if struct.type.get_field_index(name) < 0:
        return pa.nulls(len(struct), pa.string())
    column = struct.field(name)
    if pa.types.is_null(column.type):
        return pa.nulls(len(struct), pa.string())
    return column if pa.types.is_string(column.type) else None


def _revenue_column(struct: pa.StructArray) -> pa.Array | None:
    if struct.type.get_field_index("revenue") < 0:
        return pa.nulls(len(struct), pa.float64())
    column = struct.field("revenue")
    if pa.types.is_null(column.type):
        return pa.nulls(len(struct), pa.float64())
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return column
    return None


def _canonical_instants(text: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(ok, microseconds since the epoch) of canonical ``YYYY-MM-DDTHH:MM:SS.mmmZ`` texts that name a real
    instant. Arrow's parser rolls 30 February over to 2 March and 23:59:60 to the next minute, so each
    field of the parsed instant must equal the one written; year 0 is refused as Python refuses it."""
    shaped = pc.fill_null(pc.match_substring_regex(text, _CANONICAL_RE2), False)
    shaped = pc.and_(shaped, pc.invert(pc.fill_null(pc.starts_with(text, "0000"), False)))
    digits = pc.if_else(shaped, text, "0000-00-00T00:00:00.000Z")

    def number(start: int, stop: int) -> pa.Array:
        return pc.cast(pc.utf8_slice_codeunits(digits, start, stop), pa.int64())

    seconds = pc.strptime(pc.utf8_slice_codeunits(digits, 0, 19), format="%Y-%m-%dT%H:%M:%S", unit="s",
                          error_is_null=True)
    ok = shaped
    for field, (start, stop) in (("year", (0, 4)), ("month", (5, 7)), ("day", (8, 10)), ("hour", (11, 13)),
                                 ("minute", (14, 16)), ("second", (17, 19))):
        ok = pc.and_(ok, pc.fill_null(pc.equal(getattr(pc, field)(seconds), number(start, stop)), False))
    micros = pc.add(pc.multiply(pc.cast(pc.fill_null(seconds, 0), pa.int64()), 1_000_000),
                    pc.multiply(number(20, 23), 1000))
    return ok, micros


def _canonical_properties(column: pa.Array, ok: list[bool]) -> pa.Array:
    """``properties`` as ``normalize_event`` writes it: the object's JSON text, sorted and compact, or ``""``.

    The few events that carry properties are re-serialized with the very calls ``normalize_event`` makes;
    an event whose properties are not a JSON object within the size limit is marked not ok here.
    """
    values = column.to_pylist()
    out: list[str] = []
    for i, value in enumerate(values):
        if value is None or value == "":
            out.append("")
            continue
        try:
            if len(value) > MAX_PROPERTIES_CHARS:
                raise ValueError
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if type(parsed) is not dict:
            ok[i] = False
            out.append("")
            continue
        out.append(json.dumps(parsed, separators=(",", ":"), sort_keys=True) if parsed else "")
    return pa.array(out, pa.string())


def _typed_columns(items: list[dict]) -> tuple[dict[str, pa.Array], pa.Array] | None:
    """The events' fields as Arrow columns (strings, and numbers for ``revenue``), or None when a field holds
    another type (an integer ``user_id``, an object ``properties`` …) or types Arrow cannot put in one column."""
    try:
        struct = pa.array(items)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if not pa.types.is_struct(struct.type):
        return None
    texts = {name: _text_column(struct, name) for name in _TEXT_FIELDS}
    revenue = _revenue_column(struct)
    if revenue is None or any(column is None for column in texts.values()):
        return None
    return texts, revenue  # type: ignore[return-value]  (None checked above)


def _groups(items: list[dict], rows: list[int]) -> list[tuple[int, list[dict]]]:
    """``items`` grouped by their record (``rows`` is ascending and each record's items are contiguous)."""
    groups: list[tuple[int, list[dict]]] = []
    for item, row in zip(items, rows, strict=True):
        if not groups or groups[-1][0] != row:
            groups.append((row, []))
        groups[-1][1].append(item)
    return groups


def judge_plain(items: list[dict], rows: list[int], indices: list[int], received: list[datetime],
                max_age: timedelta, max_future: timedelta, events: bool = True) -> tuple[FastEvents | None, set[int]]:
    """Judge ``items`` (events of plain records; ``rows``/``indices``: their record and position in it;
    ``received[row]``: the reference time of record ``row``) column-wise. Returns the accepted events of the
    records whose every event passed (None when ``events`` is False: only the second part is wanted), and the
    rows of the records that must take the per-event path."""
    typed = _typed_columns(items)
    if typed is None:  # some record holds a type the others do not: set those records aside, judge the rest
        odd = {row for row, group in _groups(items, rows) if _typed_columns(group) is None}
        kept = [i for i, row in enumerate(rows) if row not in odd]
        if not odd or not kept:
            return None, set(rows)
        fast, slow = judge_plain([items[i] for i in kept], [rows[i] for i in kept], [indices[i] for i in kept],
                                 received, max_age, max_future, events)
        return fast, slow | odd
    texts, revenue = typed

    checks = []
    for name in ("tenant", "event_id", "user_id", "page", "country", "device"):
        checks.append(pc.fill_null(pc.less_equal(pc.utf8_length(texts[name]), MAX_TEXT[name]), True))
    for name in ("event", "timestamp", "event_id", "user_id"):  # required here (event_id: else a derived id)
        checks.append(pc.fill_null(pc.greater(pc.utf8_length(texts[name]), 0), False))
    checks.append(pc.fill_null(pc.match_substring_regex(texts["event"], _EVENT_NAME_RE2), False))
    ts_ok, ts_micros = _canonical_instants(texts["timestamp"])
    rows_array = pa.array(rows, pa.int64())
    received_micros = pc.take(pa.array([_micros(r) for r in received], pa.int64()), rows_array)
    checks += [ts_ok,
               pc.greater_equal(ts_micros, pc.subtract(received_micros, _micros(_EPOCH + max_age))),
               pc.less_equal(ts_micros, pc.add(received_micros, _micros(_EPOCH + max_future)))]
    revenue = pc.cast(revenue, pa.float64(), safe=False)
    checks.append(pc.fill_null(pc.is_finite(revenue), True))
    checks.append(pc.fill_null(pc.less(pc.abs(revenue), _MAX_EXACT_FLOAT), True))
    stamped = texts["received_at"]
    stamped_ok, _ = _canonical_instants(stamped)
    checks.append(pc.or_(pc.is_null(stamped), stamped_ok))  # a stamp that is not canonical: per-event path
    ok = checks[0]
    for check in checks[1:]:
        ok = pc.and_(ok, check)
    ok_list = ok.to_pylist()
    properties = _canonical_properties(texts["properties"], ok_list)

    slow = set(pc.unique(pc.filter(rows_array, pc.invert(pa.array(ok_list, pa.bool_())))).to_pylist())
    if not events:
        return None, slow
    keep = pc.invert(pc.is_in(rows_array, value_set=pa.array(sorted(slow), pa.int64()))) if slow else None

    texts_of = {r: format_ts(r) for r in set(received)}  # the reference time of a record is its stamp
    default_stamp = pc.take(pa.array([texts_of[r] for r in received], pa.string()), rows_array)
    tenant = texts["tenant"]
    columns = {
        "tenant": pc.if_else(pc.fill_null(pc.greater(pc.utf8_length(tenant), 0), False), tenant, "default"),
        "event": texts["event"],
        "timestamp": texts["timestamp"],
        "event_id": texts["event_id"],
        "user_id": texts["user_id"],
        "page": pc.fill_null(texts["page"], ""),
        "country": pc.fill_null(texts["country"], ""),
        "device": pc.fill_null(texts["device"], ""),
        "revenue": pc.fill_null(revenue, 0.0),
        "properties": properties,
        "received_at": pc.coalesce(stamped, default_stamp),
    }
    indices_array = pa.array(indices, pa.int32())
    if keep is not None:
        columns = {name: pc.filter(column, keep) for name, column in columns.items()}
        rows_array, indices_array = pc.filter(rows_array, keep), pc.filter(indices_array, keep)
    return FastEvents(columns, rows_array, indices_array), slow


def parse_record(value: bytes | None) -> Any:
    """The record's JSON (None when it is not JSON: the per-event path says why)."""
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
