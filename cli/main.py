"""``lakehouse``: one command line for the stack, the serving process, the stream job, queries and the demo."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Sequence

from cli.audit_commands import add_audit_parser
from cli.lake_command import add_lake_parser
from cli.sql_command import add_sql_parser
from cli.tenants_command import add_tenants_parser
from cli.tiers_commands import add_tier_commands
from common.settings import Settings
from common.terminal import print_table


def _stack(settings: Settings):  # stack.Stack, imported lazily
    from stack.app_services import full_stack

    return full_stack(settings)


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    stack = _stack(settings)
    names = args.services or None
    if args.action == "up":
        statuses = stack.up(names)
    elif args.action == "down":
        statuses = stack.down(names)
    else:
        statuses = stack.status(names)
    for status in statuses:
        print(status)
    if args.action == "status":
        found = stack.strays(names)
        for stray in found:
            print(f"{'stray':<10} {stray}: of {settings.home} but of no running service")
        if found:
            print("           `lakehouse stack down` stops them (`down <service>` only that service's)")
            return 1
    return 0 if args.action == "down" or all(s.state == "running" for s in statuses) else 1


def _yield_cpu(settings: Settings) -> None:
    """Before the serving process starts any thread (``common.cpu_priority``)."""
    from common.cpu_priority import yield_cpu

    done = yield_cpu(settings.serving_cpu_nice)
    if done:
        print(f"serving yields the CPU to the stream: {', '.join(done)} (LAKEHOUSE_SERVING_CPU_NICE)", flush=True)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    _yield_cpu(settings)
    from serving.processes import serve

    if args.workers is not None:
        if args.workers < 0:
            raise SystemExit("--workers must be 0 (one process, also the hot node) or more")
        os.environ["LAKEHOUSE_API_WORKERS"] = str(args.workers)  # the workers read their settings from the environment
        settings = settings.model_copy(update={"api_workers": args.workers})
    serve(settings)
    return 0


def cmd_hot_node(args: argparse.Namespace, settings: Settings) -> int:
    _yield_cpu(settings)
    from serving.processes import run_hot_node

    run_hot_node(settings)
    return 0


def cmd_stream(args: argparse.Namespace, settings: Settings) -> int:
    from common.hot_store import open_hot_store
    from stack.app_services import stream_ready_file
    from stack.maven import spark_jars
    from stack.stream_operators import build_stream_operators
    from stream.job import run_stream

    jars = [str(p) for p in spark_jars(settings, print)]  # Kafka connector, plus S3A for an s3:// lake
    jars.append(str(build_stream_operators(settings, print)))  # the hot query's de-duplication (stream/jvm)
    run_stream(settings, open_hot_store(settings), jars, progress=lambda line: print(line, flush=True),
               ready_file=stream_ready_file(settings))
    return 0


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from common.hot_store import open_hot_store

    table = open_hot_store(settings).query_arrow(args.sql)
    rows = table.to_pylist()
    if args.format == "json":
        print(json.dumps(rows, default=str, indent=1))
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=table.column_names)
        writer.writeheader()
        writer.writerows(rows)
    else:
        print_table(table.column_names, [[row[c] for c in table.column_names] for row in rows])
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from common.hot_schema import migrate
    from common.hot_store import open_hot_store

    applied = migrate(open_hot_store(settings))
    print("applied: " + (", ".join(applied) if applied else "nothing (schema is current)"))
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from demo.run import run_demo

    return run_demo(settings, seconds=args.seconds, rate=args.rate)


def cmd_dagster(args: argparse.Namespace, settings: Settings) -> int:
    from orchestration.instance import run_dagster_dev

    return run_dagster_dev(settings, port=args.port, host=args.host)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lakehouse", description="Real-time analytics lakehouse.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("stack", help="start, check or stop the local services")
    s.add_argument("action", choices=["up", "status", "down"])
    s.add_argument("services", nargs="*", help="subset of services (default: all)")
    s.set_defaults(func=cmd_stack)
    sv = sub.add_parser("serve", help="run the API (foreground): with no workers it is also the hot node")
    sv.add_argument("--workers", type=int, default=None,
                    help="HTTP worker processes (default LAKEHOUSE_API_WORKERS, 0); with N >= 1 run `lakehouse "
                         "hot-node` too. SIGHUP restarts the workers one at a time")
    sv.set_defaults(func=cmd_serve)
    sub.add_parser("hot-node", help="own embedded chDB and serve it over Arrow Flight (foreground), for "
                                    "`serve --workers N`").set_defaults(func=cmd_hot_node)
    sub.add_parser("stream", help="run the stream job (foreground)").set_defaults(func=cmd_stream)
    q = sub.add_parser("query", help="run SQL on the hot tier (through the hot node when embedded)")
    q.add_argument("sql")
    q.add_argument("--format", choices=["table", "csv", "json"], default="table")
    q.set_defaults(func=cmd_query)
    add_sql_parser(sub)  # lakehouse sql: DuckDB over the lake (cli/sql_command.py)
    sub.add_parser("migrate", help="apply the hot tier's schema migrations").set_defaults(func=cmd_migrate)
    add_lake_parser(sub)
    g = sub.add_parser("dagster", help="run Dagster's UI and daemon on the batch layer (DAGSTER_HOME=<home>/dagster)")
    g.add_argument("--port", type=int, default=3000, help="port of the UI (default 3000)")
    g.add_argument("--host", default="127.0.0.1", help="bind address of the UI (default 127.0.0.1)")
    g.set_defaults(func=cmd_dagster)
    d = sub.add_parser("demo", help="start everything, stream a synthetic clickstream, print a dashboard")
    d.add_argument("--seconds", type=int, default=60, help="how long to stream (default 60)")
    d.add_argument("--rate", type=int, default=2000, help="events per second to send (default 2000)")
    d.set_defaults(func=cmd_demo)
    add_tier_commands(sub)  # lakehouse hold place|release|list, lakehouse purge (cli/tiers_commands.py)
    add_audit_parser(sub)  # lakehouse audit [report|verify]: compliance report (cli/audit_commands.py)
    add_tenants_parser(sub)  # lakehouse tenants …: tenants and API keys via the admin API (cli/tenants_command.py)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from common.hot_store import HotStoreError
    from stack.tools import StackError

    try:
        return args.func(args, Settings())
    except (HotStoreError, StackError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
