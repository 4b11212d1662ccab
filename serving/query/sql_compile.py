"""A validated ``QuerySpec`` piece as parameterised SQL for ClickHouse (hot) or DuckDB (warm, cold).

Both dialects read the same rollup shape (tenant, event, time, country, device, page, events,
revenue, users), so one compiler with two small vocabularies keeps the tiers answering alike: only
catalogue names and constant expressions reach the text, user values are always parameters. It is the
only compiler of dashboard SQL: the DuckDB piece reads the relation ``storage_tiers.lake.reader`` hands
it (the rollups' table macro over the range's folders, the file globs a parameter too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from common.sql_files import fill, sql_file
from serving.query.spec import GRANULARITIES, METRICS, Order, QuerySpec
from serving.query.tier_routing import Segment


def _without_comments(text: str) -> str:
    """The template without its comment lines: the ClickHouse client scans every statement's text before sending it
    (to bind parameters and tell reads from writes), ~1 ms of a 20 ms dashboard answer for this one's header."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


_TEMPLATES = {
    "clickhouse": _without_comments(sql_file("clickhouse/queries/aggregate.sql")),
    "duckdb": _without_comments(sql_file("duckdb/queries/aggregate.sql")),
}
_SQL_OPS = {"=": "=", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}


@dataclass(frozen=True)
class _Dialect:
    name: str
    param: str  # how a parameter named n with ClickHouse type t is written
    sum_: str
    sum_if: str
    users: str
    users_if: str
    bucket: str
    local_day: str  # the start of the calendar day of zone {tz} that a row's time falls in, epoch seconds
    utc_day_as_local: str  # a UTC day's row placed on the local midnight of the same date (daily rollups)
    dimension: str  # a dimension's value: the hot tier stores a missing one as '', Parquet as NULL

    def p(self, name: str, ch_type: str) -> str:
        return self.param.format(name=name, type=ch_type)


CLICKHOUSE = _Dialect(
    name="clickhouse",
    param="{{{name}:{type}}}",
    sum_="sum({col})",
    sum_if="sumIf({col}, event = {ev})",
    users="uniqMerge(users)",
    users_if="uniqMergeIf(users, event = {ev})",
    bucket="toUInt32(toStartOfInterval({time}, INTERVAL {seconds} SECOND))",
    local_day="toUInt32(toStartOfDay({time}, {tz}))",
    utc_day_as_local="toUInt32(toDateTime(toDate({time}, 'UTC'), {tz}))",
    dimension="{dim}",
)
DUCKDB = _Dialect(
    name="duckdb",
    param="${name}",
    # DuckDB sums integers as HUGEINT (Arrow decimal): cast back so counts stay integers (revenue is DOUBLE)
    sum_="CAST(coalesce(sum({col}), 0) AS {type})",
    sum_if="CAST(coalesce(sum({col}) FILTER (WHERE event = {ev}), 0) AS {type})",
    users="coalesce(length(list_distinct(flatten(list(user_ids)))), 0)",
    users_if="coalesce(length(list_distinct(flatten(list(user_ids) FILTER (WHERE event = {ev})))), 0)",
    bucket="CAST(epoch({time}) AS BIGINT) // {seconds} * {seconds}",
    local_day="CAST(epoch(timezone({tz}, date_trunc('day', timezone({tz}, {time})))) AS BIGINT)",
    utc_day_as_local="CAST(epoch(timezone({tz}, CAST(timezone('UTC', {time}) AS DATE)::TIMESTAMP)) AS BIGINT)",
    dimension="coalesce({dim}, '')",  # so a missing country merges with the hot tier's '' across a cut
)


def _aggregate(dialect: _Dialect, metric: str, params: dict[str, Any]) -> str:
    definition = METRICS[metric]
    event = None
    if definition.event is not None:
        params[f"ev_{metric}"] = definition.event
        event = dialect.p(f"ev_{metric}", "String")
    if definition.measure == "users":
        return dialect.users_if.format(ev=event) if event else dialect.users
    kind = "DOUBLE" if definition.measure == "revenue" else "BIGINT"
    return (dialect.sum_if if event else dialect.sum_).format(col=definition.measure, ev=event, type=kind)


def compile_segment(
    spec: QuerySpec, segment: Segment, tenant: str, *, whole: bool, timeout_seconds: int = 30,
    relation: tuple[str, dict[str, Any]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """SQL and parameters for one tier's piece of the range. ``whole``: this piece is the whole
    answer, so HAVING, ORDER BY and LIMIT run in the engine; otherwise the pieces are merged first.
    ``timeout_seconds`` 0 leaves ClickHouse's ``max_execution_time`` out (a session that may set nothing).

    ``relation``: for a lake piece, the FROM text and its parameters from
    ``LakeRollupReader.relation`` (the range's files only); without it the lake view of the source's
    name is read (a session with the views, e.g. ``lakehouse sql`` or a comparison in a benchmark). For a
    ``rollups_1h`` piece, the day copies' subquery from ``common.day_rollups.relation`` (same columns).
    """
    source = segment.source
    dialect = CLICKHOUSE if source.tier == "hot" else DUCKDB
    table = source.table
    params: dict[str, Any] = {"tenant": tenant}
    if relation is not None:
        table, relation_params = relation
        params |= relation_params
    if dialect is CLICKHOUSE:
        params |= {"start": segment.start.replace(tzinfo=None), "end": segment.end.replace(tzinfo=None)}
    else:
        params |= {"start": segment.start, "end": segment.end, "first_day": segment.start.date(),
                   "last_day": (segment.end - timedelta(microseconds=1)).date()}
    select, keys = [], []
    if spec.granularity:
        seconds = GRANULARITIES[spec.granularity]
        if spec.local_days:
            params["tz"] = spec.tz
            form = dialect.utc_day_as_local if source.step >= 86400 else dialect.local_day
            bucket = form.format(time=source.time_column, tz=dialect.p("tz", "String"))
        else:
            bucket = dialect.bucket.format(time=source.time_column, seconds=seconds)
        select.append(f"{bucket} AS bucket")
        keys.append("bucket")
    for dim in spec.dimensions:
        expr = dialect.dimension.format(dim=dim)
        select.append(dim if expr == dim else f"{expr} AS {dim}")
        keys.append(expr)
    select += [f"{_aggregate(dialect, m, params)} AS {metric_alias(m)}" for m in spec.metrics]
    where, having = [], []
    for i, flt in enumerate(spec.filters):
        if flt.on_metric:
            continue
        name = f"f{i}"
        column = dialect.dimension.format(dim=flt.field)
        if flt.op in ("in", "not in"):
            params[name] = list(flt.values)
            negate = "NOT " if flt.op == "not in" else ""
            where.append(f"AND {negate}{flt.field} IN {dialect.p(name, 'Array(String)')}"
                         if dialect is CLICKHOUSE else f"AND {negate}list_contains(${name}, {column})")
        else:
            params[name] = flt.values[0]
            where.append(f"AND {column} {_SQL_OPS[flt.op]} {dialect.p(name, 'String')}")
    order, limit = "", ""
    if whole:
        for i, flt in enumerate(spec.filters):
            if not flt.on_metric:
                continue
            expr = _aggregate(dialect, flt.field, params)
            names = [f"h{i}_{j}" for j in range(len(flt.values))]
            for name, value in zip(names, flt.values, strict=True):
                params[name] = value
            if flt.op == "between":
                lo, hi = (dialect.p(n, "Float64") for n in names)
                having.append(f"{expr} BETWEEN {lo} AND {hi}")
            else:
                having.append(f"{expr} {_SQL_OPS[flt.op]} {dialect.p(names[0], 'Float64')}")
        order = ", ".join(
            f"{metric_alias(o.field) if o.field in METRICS else o.field} {'DESC' if o.descending else 'ASC'}"
            for o in effective_order(spec)
        )
        order = f"ORDER BY {order}" if order else ""
        limit = f"LIMIT {spec.limit}" if spec.limit else ""
    sql = fill(
        _TEMPLATES[dialect.name],
        select=",\n       ".join(select),
        table=table,
        time=source.time_column,
        where="\n  ".join(where),
        group_by=f"GROUP BY {', '.join(keys)}" if keys else "",
        having=f"HAVING {' AND '.join(having)}" if having else "",
        order_by=order,
        limit=limit,
        # ClickHouse only (DuckDB's timeout is the reader's); 0: no server-side timeout (read-only sessions)
        server_settings=f"SETTINGS max_execution_time = {int(timeout_seconds)}" if timeout_seconds > 0 else "",
    )
    return sql, params


def metric_alias(metric: str) -> str:
    """Result column of a metric: prefixed, because ClickHouse lets an alias named like a column (``events``)
    shadow that column inside the aggregate."""
    return f"m_{metric}"


def effective_order(spec: QuerySpec) -> list[Order]:
    """The order asked for, then a deterministic tie-break (buckets, then dimensions, ascending)."""
    ordered = list(spec.order_by)
    named = {o.field for o in ordered}
    if spec.granularity and "bucket" not in named:
        ordered.append(Order("bucket", descending=False))
    ordered += [Order(d, descending=False) for d in spec.dimensions if d not in named]
    return ordered
