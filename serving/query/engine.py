"""Answers a ``QuerySpec`` for one tenant from whichever tiers hold its range, and merges the pieces.

Hot pieces go to ClickHouse through the hot store; warm and cold pieces to DuckDB through the lake
reader (``storage_tiers.lake.reader``: the rollups of the piece's range only, a cursor per thread).
``serving.query.sql_compile`` writes the SQL of both. A piece that is the whole answer carries HAVING, ORDER BY
and LIMIT into its SQL (top-N over thousands of pages stays in the engine); pieces of a split range
are merged here first. A bucket never spans two tiers, so merged time series are exact; totals over a
split range add the pieces, which is exact for counts and revenue and an upper bound for unique users
(flagged ``approximate``). With ``day_sketches`` on, long ranges read the lake's day sketches
(``serving.query.sketch_answers``): unique users merged from several days' sketches are an estimate whose
relative error bound the answer states in ``error_bounds``, beside every other approximate metric's
(``relative_error`` None: no bound can be given, ``note`` says why).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from operator import itemgetter
from typing import Any

import pyarrow as pa
from opentelemetry import trace

from common import day_rollups
from common.hot_store import HotStore, is_remote, write_count
from common.settings import Settings
from serving.query import kept_pieces
from serving.query.buckets import bucket_starts, empty_value, floor_bucket
from serving.query.kept_pieces import KeptPieces
from serving.query.kpi_rows import base_spec, with_kpis
from serving.query.sketch_answers import answer_rows, compile_sketch_read
from serving.query.spec import GRANULARITIES, METRICS, QueryError, QuerySpec
from serving.query.sql_compile import compile_segment, effective_order, metric_alias
from serving.query.tier_routing import Horizons, Segment, horizons_from_policy, plan
from storage_tiers.lake.reader import LakeFilesChanged, LakeQueryTimeout, LakeRollupReader
from storage_tiers.policy import load_policy
from storage_tiers.tiers.month_sketches import day_ranges_outside, whole_months

DEFAULT_ROW_CAP = 10_000


class QueryTimeout(TimeoutError):
    """The query ran past the configured timeout and was cancelled."""


_tracer = trace.get_tracer("lakehouse.query")


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]  # a bucket is epoch seconds (UTC)
    sources: list[str] = field(default_factory=list)  # e.g. ["hot:rollups_1h", "warm:rollups_hourly"]
    approximate: list[str] = field(default_factory=list)
    # per approximate metric: {"relative_error": bound or None, "note": how it is approximate}
    error_bounds: dict[str, dict[str, Any]] = field(default_factory=dict)
    truncated: bool = False
    took_ms: float = 0.0
    # where the rows read begin: rollup rows start on their hour or day, so a range starting inside one
    # is read from that row's start (the answer says so rather than pretend to the second)
    read_from: datetime | None = None

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class QueryEngine:
    """``store``: the hot tier (None: hot pieces are refused); ``lake``: the warm/cold reader (None: lake
    pieces are refused). Safe to call from many threads."""

    def __init__(
        self,
        store: HotStore | None,
        lake: LakeRollupReader | None = None,
        *,
        horizons: Horizons | None = None,
        timeout_seconds: float = 30.0,
        server_timeout: bool = True,
        day_sketches: bool = False,
        day_copies: bool = True,
        month_sketches: bool = True,
        day_shapes: bool = True,
        kept_builds: bool = True,
        reach_rows: bool = True,
        keep_pieces: bool = True,
    ) -> None:
        self._store = store
        self._lake = lake
        self.horizons = horizons or Horizons()
        self.timeout_seconds = timeout_seconds
        # the hot node runs every query on a read-only session, which refuses `max_execution_time`: its
        # clients are bounded by the Flight call's timeout instead
        self._server_timeout = server_timeout
        self.tier_queries: dict[str, int] = {"hot": 0, "warm": 0, "cold": 0}
        self.day_sketches = day_sketches  # long ranges from the lake's day sketches (tier_routing)
        # closed days of rollups_1h from their day copies (common.day_rollups; False: rollups_1h alone, the
        # benchmark's comparison); the answers are the same
        self.day_copies = day_copies
        # totals read complete months from their merged month sketches (storage_tiers.tiers.month_sketches; False:
        # every day row, the benchmark's comparison); the answers are the same
        self.month_sketches = month_sketches
        # from the copies, the narrowest shape that answers (common.day_rollups.read; False: the full rows, the
        # benchmark's comparison); the answers are the same
        self.day_shapes = day_shapes
        # the copies' valid builds kept per process while their marks do not change (False: read before every
        # question), and day rows of a build of part of a day (False: of whole days only): the benchmark's comparisons
        self.kept_builds = kept_builds
        self.reach_rows = reach_rows
        self.copy_reads: Counter[str] = Counter()  # per structure read for copied days (tests, benchmarks)
        # the builds' shaped part of a question's answer kept while they are read (serving.query.kept_pieces; None:
        # read with the rest every time, the benchmark's comparison); the answers are the same
        self.kept_pieces = KeptPieces() if keep_pieces else None

    @classmethod
    def for_settings(cls, settings: Settings, store: HotStore) -> QueryEngine:
        """The engine as ``settings`` configure it: the lake reader, the tier policy's horizons, the timeout."""
        return cls(store, LakeRollupReader(settings, listing_seconds=settings.lake_session_seconds),
                   horizons=horizons_from_policy(load_policy(settings)), timeout_seconds=settings.query_timeout_seconds,
                   server_timeout=not is_remote(store), day_sketches=settings.query_day_sketches,
                   month_sketches=settings.query_month_sketches)

    def run(self, tenant: str, spec: QuerySpec, now: datetime) -> QueryResult:
        if spec.kpis:
            return self._run_with_kpis(tenant, spec, now)
        started = time.perf_counter()
        segments = plan(spec, now, self.horizons, day_sketches=self.day_sketches)
        if any(s.source.table == "day_sketches" for s in segments) and self._sketches_stale(segments):
            segments = plan(spec, now, self.horizons, day_sketches=False)  # the old way: every day as it is now
        whole = len(segments) == 1
        columns = (["bucket"] if spec.granularity else []) + list(spec.dimensions) + list(spec.metrics)
        bounds: dict[str, float] = {}
        pieces = [self._run_segment(spec, segment, tenant, whole, bounds) for segment in segments]
        in_engine = whole and segments[0].source.table != "day_sketches"  # HAVING, ORDER BY, LIMIT ran in SQL
        rows = pieces[0] if in_engine else _merge(spec, pieces)
        if spec.fill != "none":
            rows = _filled(spec, rows)
        truncated = False
        if spec.limit is None and len(rows) > DEFAULT_ROW_CAP:
            rows, truncated = rows[:DEFAULT_ROW_CAP], True
        error_bounds: dict[str, dict[str, Any]] = {
            m: {"relative_error": bound, "note": "unique users merged from day sketches (HyperLogLog): within this "
                "relative error in ~99.7 % of answers"} for m, bound in bounds.items()}
        if not whole and not spec.granularity:
            for m in spec.metrics:
                if METRICS[m].measure == "users":
                    error_bounds[m] = {"relative_error": None, "note": "the sum of the tiers' counts: an upper bound "
                                       "(a user seen in two tiers' pieces counts twice)"}
        if spec.local_days and any(s.source.step >= 86400 for s in segments):
            # UTC days standing in for the zone's days (see tier_routing)
            error_bounds = {m: {"relative_error": None, "note": "UTC days stand in for the zone's days past the "
                                "warm tier"} for m in spec.metrics}
        approximate = [m for m in spec.metrics if m in error_bounds]
        return QueryResult(
            columns=columns,
            rows=[[row[c] for c in columns] for row in rows],
            sources=[f"{s.source.tier}:{s.source.table}" for s in segments],
            approximate=approximate,
            error_bounds=error_bounds,
            truncated=truncated,
            took_ms=round((time.perf_counter() - started) * 1000, 2),
            read_from=segments[0].start,
        )

    def _sketches_stale(self, segments: list[Segment]) -> bool:
        """Whether a day of the sketches' piece has no current day sketches (a lake not backfilled yet, a day whose
        daily rollups changed since): then the whole answer is read the old way, so no answer mixes the two."""
        if self._lake is None:
            return False
        return any(self._lake.stale_sketch_days(s.start, s.end) for s in segments if s.source.table == "day_sketches")

    def _run_with_kpis(self, tenant: str, spec: QuerySpec, now: datetime) -> QueryResult:
        """The catalogue metrics the KPIs read, then their formulas row by row (``serving.query.kpi_rows``).
        A KPI is approximate when a metric it reads is (unique users over a split range)."""
        base = self.run(tenant, base_spec(spec), now)
        rows = with_kpis(spec, base.records())
        columns = (["bucket"] if spec.granularity else []) + list(spec.dimensions) + list(spec.metrics)
        shaky = set(base.approximate)
        approximate = [m for m in spec.metrics
                       if m in shaky or any(k.name == m and shaky & set(k.metrics) for k in spec.kpis)]
        bounds = {m: base.error_bounds[m] for m in approximate if m in base.error_bounds}
        for m in approximate:  # a KPI: as approximate as the metrics it reads, with no bound of its own
            bounds.setdefault(m, {"relative_error": None, "note": "computed from approximate metrics"})
        return replace(base, columns=columns, rows=[[row[c] for c in columns] for row in rows],
                       approximate=approximate, error_bounds=bounds)

    def _run_segment(self, spec: QuerySpec, segment: Segment, tenant: str, whole: bool,
                     bounds: dict[str, float]) -> list[dict[str, Any]]:
        self.tier_queries[segment.source.tier] += 1
        # one span per tier query (a no-op unless tracing is configured: serving/tracing.py)
        with _tracer.start_as_current_span(f"query {segment.source.tier}", attributes={
                "lakehouse.tier": segment.source.tier, "lakehouse.table": segment.source.table,
                "lakehouse.tenant": tenant, "lakehouse.metrics": list(spec.metrics),
                "lakehouse.from": segment.start.isoformat(), "lakehouse.to": segment.end.isoformat()}) as span:
            if segment.source.tier == "hot":
                rows = self._run_hot(spec, segment, tenant, whole)
            elif segment.source.table == "day_sketches":
                rows = self._run_sketches(spec, segment, tenant, bounds)
            else:
                rows = self._run_lake(spec, segment, tenant, whole)
            span.set_attribute("lakehouse.rows", len(rows))
        return rows

    def _run_hot(self, spec: QuerySpec, segment: Segment, tenant: str, whole: bool) -> list[dict[str, Any]]:
        if self._store is None:
            raise QueryError("this engine has no hot tier; ask for tier=warm or tier=cold")
        relation = None
        if self.day_copies and segment.source.table == "rollups_1h":
            # the valid day builds when the question starts: their rows stay until it has finished
            count = write_count(self._store, kept_pieces.TABLE) if self.kept_pieces is not None else None
            shape, day_rows = engine_shape(spec) if self.day_shapes else (day_rollups.FULL, False)
            found = day_rollups.read(self._store, segment.start, segment.end, shape, day_rows,
                                     kept=self.kept_builds, reach_rows=self.reach_rows)
            if found is not None:
                self.copy_reads[found.structure] += 1
                relation = (found.sql, found.params)
                if count is not None and found.shaped is not None and _summed_only(spec):
                    return self._run_hot_in_parts(spec, segment, tenant, whole, found, count)
                if count is not None and found.shaped is not None and _bucketed_users(spec):
                    rows = self._run_hot_by_buckets(spec, segment, tenant, whole, found.shaped, count, shape, day_rows)
                    if rows is not None:
                        return rows
        sql, params = compile_segment(spec, segment, tenant, whole=whole, timeout_seconds=self._timeout,
                                      relation=relation)
        return self._query_hot(sql, params, spec)

    @property
    def _timeout(self) -> int:
        return int(self.timeout_seconds) if self._server_timeout else 0

    def _query_hot(self, sql: str, params: dict[str, Any], spec: QuerySpec) -> list[dict[str, Any]]:
        """The statement's rows, its metrics' columns named as the metrics."""
        assert self._store is not None
        try:
            return _named_rows(self._store.query_arrow(sql, params), spec)
        except Exception as exc:
            if "TIMEOUT_EXCEEDED" in str(exc):
                raise QueryTimeout(f"the query ran longer than {self.timeout_seconds:g} s") from exc
            raise

    def _run_hot_in_parts(self, spec: QuerySpec, segment: Segment, tenant: str, whole: bool,
                          found: day_rollups.Read, count: int) -> list[dict[str, Any]]:
        """The builds' shaped rows grouped once per hour (``kept_pieces``), the rest read now, summed by key."""
        assert found.shaped is not None
        parts = [(found.shaped, True), *([(found.rest, False)] if found.rest is not None else [])]
        return self._read_parts(spec, tenant, whole, count, [
            (replace(segment, start=part.start.replace(tzinfo=UTC), end=part.end.replace(tzinfo=UTC)),
             (part.sql, part.params), keep) for part, keep in parts])

    def _run_hot_by_buckets(self, spec: QuerySpec, segment: Segment, tenant: str, whole: bool, shaped: day_rollups.Part,
                            count: int, shape: str, day_rows: bool) -> list[dict[str, Any]] | None:
        """Unique users by bucket: the buckets that lie wholly in the builds' part read once per hour
        (``kept_pieces``), the later ones now. Two parts' users are never added: the split is a bucket boundary, so
        each bucket comes whole from one part. None when the builds hold no whole bucket before the rest's hours
        (then the range is read at once)."""
        assert spec.granularity is not None
        split = floor_bucket(shaped.end.replace(tzinfo=UTC), spec.granularity, spec.tz)
        if not segment.start < split < segment.end:
            return None
        head = day_rollups.read(self._store, segment.start, split, shape, day_rows,
                                kept=self.kept_builds, reach_rows=self.reach_rows)
        if head is None or head.shaped is None or head.rest is not None:
            return None  # an hour before the split is not in a valid build: its rows can change at any time
        tail = day_rollups.read(self._store, split, segment.end, shape, day_rows,
                                kept=self.kept_builds, reach_rows=self.reach_rows)
        return self._read_parts(spec, tenant, whole, count, [
            (replace(segment, end=split), (head.shaped.sql, head.shaped.params), True),
            (replace(segment, start=split), (tail.sql, tail.params) if tail else None, False)])

    def _read_parts(self, spec: QuerySpec, tenant: str, whole: bool, count: int,
                    parts: list[tuple[Segment, tuple[str, dict[str, Any]] | None, bool]]) -> list[dict[str, Any]]:
        """Each part (its span, the relation it reads, whether it is kept under ``count``) grouped as ``spec``
        groups, then merged by key (and, when ``whole``, filtered, ordered and cut as the answer)."""
        assert self.kept_pieces is not None
        pieces = []
        for part, relation, keep in parts:
            sql, params = compile_segment(spec, part, tenant, whole=False, timeout_seconds=self._timeout,
                                          relation=relation)
            read = partial(self._query_hot, sql, params, spec)
            pieces.append(self.kept_pieces.rows_of(count, sql, params, read) if keep else read())
        return _merge(spec, pieces, final=whole)

    def _run_sketches(self, spec: QuerySpec, segment: Segment, tenant: str,
                      bounds: dict[str, float]) -> list[dict[str, Any]]:
        if self._lake is None:
            raise QueryError("this server has no warm/cold tier configured (lake queries are off)")
        for fresh in (False, True):  # listed files gone since (a mover, a purge): list again, once
            months = self._merged_months(spec, segment, fresh)
            if months:  # complete months from their month sketches, the other days from their day rows
                relation = self._lake.relation_of_days(
                    segment.source.table, day_ranges_outside(segment.start, segment.end, months), fresh=fresh)
                merged = self._lake.month_relation(months, fresh=fresh)
                sql, params, dimension = compile_sketch_read(spec, segment, tenant, relation, merged, months)
            else:
                relation = self._lake.relation(segment.source.table, segment.start, segment.end, fresh=fresh)
                sql, params, dimension = compile_sketch_read(spec, segment, tenant, relation)
            try:
                read = self._lake.execute(sql, params, self.timeout_seconds).to_pylist()
            except LakeQueryTimeout as exc:
                raise QueryTimeout(str(exc)) from None
            except LakeFilesChanged:
                if fresh:
                    raise
                continue
            piece = answer_rows(spec, dimension, read)
            for metric, bound in piece.estimated.items():
                bounds[metric] = max(bound, bounds.get(metric, 0.0))
            renames = {metric_alias(m): m for m in spec.metrics}
            return [{renames.get(k, k): v for k, v in row.items()} for row in piece.rows]
        raise AssertionError("unreachable")

    def _merged_months(self, spec: QuerySpec, segment: Segment, fresh: bool) -> list[str]:
        """The complete months of a total's sketch piece whose month sketches are current (none for a day series:
        each of its buckets is one day)."""
        if not self.month_sketches or spec.granularity is not None or self._lake is None:
            return []
        wanted = whole_months(segment.start, segment.end)
        if not wanted:
            return []
        current = self._lake.current_sketch_months(fresh=fresh)
        return [m for m in wanted if m in current]

    def _run_lake(self, spec: QuerySpec, segment: Segment, tenant: str, whole: bool) -> list[dict[str, Any]]:
        if self._lake is None:
            raise QueryError("this server has no warm/cold tier configured (lake queries are off)")
        for fresh in (False, True):  # listed files gone since (a mover, retention): list again, once
            relation = self._lake.relation(segment.source.table, segment.start, segment.end, fresh=fresh)
            sql, params = compile_segment(spec, segment, tenant, whole=whole, relation=relation)
            try:
                return _named_rows(self._lake.execute(sql, params, self.timeout_seconds), spec)
            except LakeQueryTimeout as exc:
                raise QueryTimeout(str(exc)) from None
            except LakeFilesChanged:
                if fresh:
                    raise
        raise AssertionError("unreachable")


def engine_shape(spec: QuerySpec) -> tuple[str, bool]:
    """The narrowest shape of the day copies that answers ``spec`` (every dimension it groups or filters by), and
    whether its buckets are whole UTC days or coarser (no buckets: a total or a breakdown), so whole days of the range
    may be read as day rows."""
    used = set(spec.dimensions) | {f.field for f in spec.filters if not f.on_metric}
    measured = {*spec.metrics, *(f.field for f in spec.filters), *(o.field for o in spec.order_by)}
    by_event = any(METRICS[m].event is not None for m in measured if m in METRICS)
    day_rows = spec.granularity is None or (GRANULARITIES[spec.granularity] % 86400 == 0 and not spec.local_days)
    return day_rollups.shape_for(used, by_event), day_rows


def _named_rows(table: pa.Table, spec: QuerySpec) -> list[dict[str, Any]]:
    """A piece's rows with its metrics' columns (``metric_alias``) named as the metrics: renamed once, in Arrow."""
    names = {metric_alias(m): m for m in spec.metrics}
    return table.rename_columns([names.get(c, c) for c in table.column_names]).to_pylist()


def _filters_answered(spec: QuerySpec) -> bool:
    """Whether each metric ``spec`` filters on is in its answer: then parts' rows can be filtered once merged."""
    return all(f.field in spec.metrics for f in spec.filters if f.on_metric)


def _summed_only(spec: QuerySpec) -> bool:
    """Whether every metric of ``spec``'s answer is a sum (events, revenue), so parts of a range add up exactly (not
    unique users), and its metric filters can be applied to the merged rows."""
    return all(METRICS[m].measure != "users" for m in spec.metrics) and _filters_answered(spec)


def _bucketed_users(spec: QuerySpec) -> bool:
    """Whether ``spec`` asks unique users per time bucket (so a range split at a bucket boundary adds no user twice),
    and its metric filters can be applied to the merged rows."""
    return (spec.granularity is not None and any(METRICS[m].measure == "users" for m in spec.metrics)
            and _filters_answered(spec))


def _merge(spec: QuerySpec, pieces: list[list[dict[str, Any]]], final: bool = True) -> list[dict[str, Any]]:
    """The pieces' rows summed by key; ``final``: then filtered on metrics, ordered and cut as the answer (not for a
    piece that other pieces are merged with later)."""
    keys = (["bucket"] if spec.granularity else []) + list(spec.dimensions)
    key_of = itemgetter(*keys) if keys else (lambda row: ())
    merged: dict[Any, dict[str, Any]] = {}
    for piece in pieces:
        for row in piece:
            key = key_of(row)
            into = merged.get(key)
            if into is None:
                merged[key] = dict(row)
            else:
                for metric in spec.metrics:
                    into[metric] += row[metric]
    rows = list(merged.values())
    if not final:
        return rows
    for flt in spec.filters:
        if flt.on_metric:
            rows = [r for r in rows if _passes(r[flt.field], flt.op, flt.values)]
    for order in reversed(effective_order(spec)):  # stable sorts, least significant key first
        rows.sort(key=lambda r, f=order.field: r[f], reverse=order.descending)
    return rows[: spec.limit] if spec.limit else rows


def _filled(spec: QuerySpec, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every bucket of the range for every group present (an empty answer without groups: one line),
    empty buckets as the spec's fill decides, in the answer's order."""
    assert spec.granularity is not None
    buckets = bucket_starts(spec.start, spec.end, spec.granularity, spec.tz)
    dims = list(spec.dimensions)
    groups = dict.fromkeys(tuple(r[d] for d in dims) for r in rows) or ({(): None} if not dims else {})
    present = {(r["bucket"], *(r[d] for d in dims)) for r in rows}
    empty = {m: empty_value(METRICS[m].measure, "auto" if spec.fill == "auto" else spec.fill) for m in spec.metrics}
    out = list(rows)
    for group in groups:
        for bucket in buckets:
            if (bucket, *group) not in present:
                out.append({"bucket": bucket, **dict(zip(dims, group, strict=True)), **empty})
    for order in reversed(effective_order(spec)):
        out.sort(key=lambda r, f=order.field: r[f], reverse=order.descending)
    return out


def _passes(value: float, op: str, bounds: tuple[Any, ...]) -> bool:
    if op == "between":
        return bounds[0] <= value <= bounds[1]
    return {">": value > bounds[0], ">=": value >= bounds[0], "<": value < bounds[0], "<=": value <= bounds[0]}[op]
