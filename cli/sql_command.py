"""``lakehouse sql``: DuckDB SQL over the lake's views (``events``, ``rollups_hourly``, ``rollups_daily``).

One-shot: ``lakehouse sql "SELECT …" [--format table|csv|parquet] [--output FILE]`` runs the
statement(s) and writes the last result (a table on the terminal by default). Without a statement it
is a small interactive shell: statements end with ``;`` and may span lines, ``.quit`` or Ctrl-D
leaves, and an error is printed without ending the session. The views are those of
``storage_tiers.lake.sql.lake_connection`` (local lake or S3/MinIO, as the settings say).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
from typing import Any, TextIO

import duckdb

from common.settings import Settings
from common.terminal import print_table

PROMPT, CONTINUATION = "lake> ", "  ..> "


def add_sql_parser(sub: Any) -> None:  # argparse's _SubParsersAction
    p = sub.add_parser("sql", help="DuckDB SQL over the lake's Parquet (views events, rollups_hourly, rollups_daily)",
                       description="Without a statement: an interactive shell (statements end with ';').")
    p.add_argument("statement", nargs="?", help="SQL to run once (omit for the interactive shell)")
    p.add_argument("--format", choices=["table", "csv", "parquet"], default="table",
                   help="output of the result (parquet needs --output)")
    p.add_argument("--output", help="write the result to this file instead of the terminal")
    p.add_argument("--max-rows", type=int, default=1000, help="rows shown in table format (default 1000)")
    p.add_argument("--lake", help="lake root to query instead of LAKEHOUSE_LAKE_URI (folder or s3://bucket/prefix)")
    p.add_argument("--as-of", dest="as_of", metavar="VERSION|TIMESTAMP",
                   help="read the Delta tables as of an ISO timestamp (all of them), e.g. 2026-11-23T10:00:00Z, or a "
                        "version of the archive and warm hourly rollups, e.g. 12 (time travel; with a version the "
                        "cold tables are read as they are now)")
    p.set_defaults(func=cmd_sql)


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    from storage_tiers.lake.sql import lake_connection

    if args.format == "parquet" and not args.output:
        print("error: --format parquet writes a file: add --output FILE", file=sys.stderr)
        return 2
    if args.lake:
        settings = settings.model_copy(update={"lake_uri": args.lake})
    try:
        con = lake_connection(settings, as_of=args.as_of)
    except duckdb.Error as exc:
        print(f"error: cannot open the lake at {settings.effective_lake_uri}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # delta-rs: no such version, a time before the table existed, unreachable storage
        when = f" as of {args.as_of}" if args.as_of else ""
        print(f"error: cannot read the lake's tables at {settings.effective_lake_uri}{when}: {exc} — check the "
              "version or timestamp (`lakehouse sql \"SELECT …\"` without --as-of reads the newest)", file=sys.stderr)
        return 1
    try:
        if args.statement is None:
            return repl(con, sys.stdin, sys.stdout, args.max_rows)
        try:
            run_statements(con, args.statement, args.format, args.output, args.max_rows, sys.stdout)
        except duckdb.Error as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    finally:
        con.close()


def run_statements(con: duckdb.DuckDBPyConnection, text: str, fmt: str, output: str | None, max_rows: int,
                   out: TextIO) -> None:
    """Run every statement of ``text``; the last one's result is written in ``fmt``."""
    statements = [s.query for s in con.extract_statements(text)]
    if not statements:
        raise duckdb.InvalidInputException("no SQL statement given")
    for statement in statements[:-1]:
        con.execute(statement)
    relation = con.sql(statements[-1])
    if relation is None:  # DDL, SET, …: nothing to show
        print("OK", file=out)
        return
    if fmt == "parquet":
        relation.write_parquet(output, compression="zstd")
    elif fmt == "csv" and output:
        relation.write_csv(output, header=True)
    elif fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(relation.columns)
        while rows := relation.fetchmany(10_000):
            writer.writerows(rows)
    else:
        _print_relation(relation, max_rows, output, out)


def _print_relation(relation: duckdb.DuckDBPyRelation, max_rows: int, output: str | None, out: TextIO) -> None:
    rows = relation.fetchmany(max_rows + 1)
    shown, more = rows[:max_rows], len(rows) > max_rows
    if output:
        with open(output, "w") as sink:
            _table(relation.columns, shown, more, sink)
    else:
        _table(relation.columns, shown, more, out)


def _table(columns: list[str], rows: list[tuple[Any, ...]], more: bool, out: TextIO) -> None:
    with contextlib.redirect_stdout(out):  # print_table writes to stdout
        print_table(columns, rows)
    tail = f"first {len(rows):,} rows shown (--max-rows, or --format csv/parquet for all)" if more else (
        f"({len(rows):,} row{'' if len(rows) == 1 else 's'})")
    print(tail, file=out)


def repl(con: duckdb.DuckDBPyConnection, source: TextIO, out: TextIO, max_rows: int) -> int:
    """Read statements ending with ';' (over several lines if need be) and show each result as a table."""
    interactive = source is sys.stdin and source.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 - line editing and history for input()
        print("DuckDB over the lake: views events, rollups_hourly, rollups_daily. End statements with ';', "
              ".quit to leave.", file=out)
    buffer: list[str] = []
    while True:
        if interactive:
            try:
                line = input(CONTINUATION if buffer else PROMPT) + "\n"
            except EOFError:
                print(file=out)
                break
        else:
            line = source.readline()
            if not line:
                break
        if not buffer and line.strip() in (".quit", ".exit", r"\q"):
            break
        buffer.append(line)
        text = "".join(buffer).strip()
        if not text.endswith(";"):
            continue
        buffer.clear()
        try:
            run_statements(con, text, "table", None, max_rows, out)
        except duckdb.Error as exc:
            print(f"error: {exc}", file=out)
    if "".join(buffer).strip():  # input ended without the final ';': run it anyway
        try:
            run_statements(con, "".join(buffer), "table", None, max_rows, out)
        except duckdb.Error as exc:
            print(f"error: {exc}", file=out)
    return 0
