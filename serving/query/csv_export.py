"""CSV downloads of query answers and dashboard widgets: one writer, one way to ask for it.

A client asks for CSV with ``?format=csv`` or ``Accept: text/csv``. The CSV is made from the same cached
JSON answer the dashboard reads, so a download never costs another query and always shows the numbers on
screen. Numbers are written as Python prints them (``repr`` of a float round-trips exactly), times as
ISO-8601 UTC, a missing value as an empty field.

Formula injection: dimension values are tenant data (any client can send an event with page
``=HYPERLINK(...)``), and a spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@``, tab or
carriage return as a formula. Every *text* cell starting with one of these (or a line feed) gets a single
quote in front, which spreadsheets show as text. Numbers are never prefixed: a negative count or revenue
is written as the number it is (``-3``, ``-0.5``), since a value the API typed as a number cannot hold a
formula; a *text* value that looks like a number (a page named ``-1``) is text and is prefixed like any
other text. Times are written by the API (ISO-8601, starting with a digit), so they are never touched.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from fastapi import HTTPException, Query, Request
from fastapi.responses import Response

CSV_MEDIA_TYPE = "text/csv"
FORMATS = ("json", "csv")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


async def csv_requested(
    request: Request,
    format_: str | None = Query(None, alias="format", description="json (default) or csv; or send Accept: text/csv"),
) -> bool:
    """FastAPI dependency: does the client want CSV? An explicit ``format`` wins over the Accept header."""
    if format_ is not None:
        if format_ not in FORMATS:
            raise HTTPException(400, f"format {format_!r} is not one of {', '.join(FORMATS)}")
        return format_ == "csv"
    accept = request.headers.get("accept", "")
    return CSV_MEDIA_TYPE in accept and "application/json" not in accept


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def neutralized(text: str) -> str:
    """A text cell a spreadsheet will show as text, never evaluate (OWASP's CSV injection guidance)."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int | Decimal):
        return value
    return neutralized(str(value))


def csv_bytes(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """RFC 4180 CSV (CRLF line ends, quoted where needed) with a header row, UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([neutralized(str(c)) for c in columns])
    writer.writerows([_cell(v) for v in row] for row in rows)
    return out.getvalue().encode()


def csv_filename(*parts: str) -> str:
    """A safe download name from its parts, e.g. ``timeseries-page_views-20261123T1318Z.csv``."""
    cleaned = [_UNSAFE.sub("_", p).strip("_") for p in parts if p]
    return "-".join(p for p in cleaned if p) + ".csv"


def csv_response(columns: Sequence[str], rows: Iterable[Sequence[Any]], filename: str,
                 headers: dict[str, str] | None = None) -> Response:
    return Response(
        csv_bytes(columns, rows),
        media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
        headers={**(headers or {}), "Content-Disposition": f'attachment; filename="{filename}"'},
    )


def stamp(iso: str) -> str:
    """``2026-11-23T13:18:00Z`` → ``20261123T1318Z`` for file names."""
    return iso.replace("-", "").replace(":", "")[:13] + "Z"
