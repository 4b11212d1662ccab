"""Every file of ``sql/`` is read here, with one syntax for what the code fills in.

* A file is one statement, or several named ones: each section starts with a line ``-- name: <section>``
  (``sql_sections``). Comment lines inside a section are dropped, and so is the statement's final ``;``.
* ``{name}`` (lower-case, no type) marks SQL text the code fills in with ``fill``: identifiers and
  fragments from the code's own whitelists (a table of the catalogue, an aggregate expression, a
  relation), never a value a user typed. ``fill`` works in one pass (filled text is not scanned again)
  and refuses to leave a placeholder unfilled.
* Values always travel as named query parameters: ``{name:Type}`` in ClickHouse, ``$name`` in DuckDB.

Migrations (``sql/clickhouse/NNN_*.sql``) are read by ``common.hot_schema``, which checksums them as they are.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from common.settings import REPO_ROOT

SQL_DIR = REPO_ROOT / "sql"
PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")  # {name}: not {name:Type} (a parameter), not {'k': v}
_SECTION = re.compile(r"^--\s*name:\s*(\w+)\s*$")


def sql_path(relative: str) -> Path:
    """``sql/<relative>``, e.g. ``duckdb/views.sql``."""
    return SQL_DIR / relative


@cache
def sql_file(relative: str) -> str:
    """The text of ``sql/<relative>``."""
    return sql_path(relative).read_text()


@cache
def sql_sections(relative: str) -> dict[str, str]:
    """The ``-- name:`` sections of ``sql/<relative>``, in file order."""
    return parse_sections(sql_file(relative))


def parse_sections(text: str) -> dict[str, str]:
    """``-- name: x`` sections of a SQL text → {name: statement without comment lines and final ``;``}."""
    sections: dict[str, list[str]] = {}
    lines: list[str] | None = None
    for line in text.splitlines():
        match = _SECTION.match(line)
        if match:
            lines = sections.setdefault(match.group(1), [])
        elif lines is not None and not line.lstrip().startswith("--"):
            lines.append(line)
    return {name: "\n".join(body).strip().rstrip(";").rstrip() for name, body in sections.items()}


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def fill(text: str, **fragments: str) -> str:
    """``text`` with each ``{name}`` replaced by ``fragments[name]`` (whitelisted SQL, never user values)."""
    missing = sorted(placeholders(text) - set(fragments))
    if missing:
        raise ValueError(f"SQL placeholders left unfilled: {missing}")
    return PLACEHOLDER.sub(lambda m: fragments[m.group(1)], text)
