"""One loader and one placeholder syntax for every file of sql/: sections, whitelisted fragments, parameters."""

from __future__ import annotations

import re

import pytest

from common.sql_files import SQL_DIR, fill, parse_sections, placeholders, sql_file

QUERY_FILES = sorted(p for p in SQL_DIR.rglob("*.sql") if not re.match(r"\d{3}_", p.name))  # not migrations


def test_sections_are_named_statements_without_comment_lines_or_final_semicolon() -> None:
    text = "-- file header\n-- name: one\nSELECT 1;\n-- comment\n--name: two\n  -- indented comment\nSELECT 2 -- kept\n"

    assert parse_sections(text) == {"one": "SELECT 1", "two": "SELECT 2 -- kept"}


def test_fill_replaces_fragments_in_one_pass_and_leaves_parameters_and_literals_alone() -> None:
    text = "SELECT {select} FROM {table} WHERE t = {tenant:String} AND h = {'dt': DATE} AND x ~ '[0-9]{4}'"

    filled = fill(text, select="count() AS n, '{table}' AS s", table="events_raw", unused="ignored")

    assert filled == ("SELECT count() AS n, '{table}' AS s FROM events_raw WHERE t = {tenant:String} "
                      "AND h = {'dt': DATE} AND x ~ '[0-9]{4}'")


def test_fill_refuses_to_leave_a_placeholder_unfilled() -> None:
    with pytest.raises(ValueError, match=r"unfilled: \['time'\]"):
        fill("SELECT {select} FROM t WHERE {time} > 0", select="1")


@pytest.mark.parametrize("path", QUERY_FILES, ids=lambda p: str(p.relative_to(SQL_DIR)))
def test_every_sql_file_uses_the_one_placeholder_syntax(path) -> None:
    text = sql_file(str(path.relative_to(SQL_DIR)))
    assert not re.search(r"__[A-Z_]+__", text), "tokens are written {name}"
    comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("--"))
    assert not placeholders(comments), "a placeholder in a comment would have to be filled"
