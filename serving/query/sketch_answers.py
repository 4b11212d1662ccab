"""A piece of an answer from the lake's day sketches (``storage_tiers.tiers.day_sketches``).

DuckDB reads the range's rows of one dimension (the tenant's whole days, or the values of the dimension the
question groups or filters by); the rows are then grouped here, by day bucket and/or value. Events and revenue
are added up (exact). Unique users of a group that is one row (one day, one value: every day bucket of a
series) are that row's exact count; of a group of several rows (a total over many days, or a day over several
filtered values) the merge of their sketches (``common.sketches``), exact while the union stays small, else a
HyperLogLog estimate within ``relative_error_bound`` of the dimension's precision: such a metric is reported
in ``SketchPiece.estimated`` with its bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from common.sketches import merged_estimate, relative_error_bound
from common.sql_files import fill, sql_sections
from serving.query.spec import METRICS, QuerySpec
from serving.query.sql_compile import metric_alias
from serving.query.tier_routing import Segment, sketch_dimension
from storage_tiers.tiers.day_sketches import PRECISIONS

_READS = sql_sections("duckdb/queries/sketch_answers.sql")


@dataclass
class SketchPiece:
    rows: list[dict[str, Any]]
    estimated: dict[str, float] = field(default_factory=dict)  # metric -> relative error bound


def compile_sketch_read(spec: QuerySpec, segment: Segment, tenant: str, relation: tuple[str, dict[str, Any]],
                        months: tuple[str, dict[str, Any]] | None = None,
                        merged_months: list[str] | None = None) -> tuple[str, dict[str, Any], str]:
    """SQL and parameters reading the segment's day sketch rows (with ``months``, the relation of the month sketches
    of ``merged_months``, a total's complete months from those instead), and the dimension read."""
    dimension = sketch_dimension(spec)
    if dimension is None:
        raise ValueError("the day sketches cannot answer this question (see tier_routing.sketch_dimension)")
    table, params = relation
    params = {**params, "tenant": tenant, "dimension": dimension, "start": segment.start, "end": segment.end,
              "first_day": segment.start.date(), "last_day": (segment.end - timedelta(microseconds=1)).date()}
    where = []
    for i, flt in enumerate(f for f in spec.filters if not f.on_metric):
        name = f"f{i}"
        if flt.op in ("in", "not in"):
            params[name] = list(flt.values)
            where.append(f"AND {'NOT ' if flt.op == 'not in' else ''}list_contains(${name}, \"value\")")
        else:
            params[name] = flt.values[0]
            where.append(f"AND \"value\" {'=' if flt.op == '=' else '!='} ${name}")
    wants_users = any(METRICS[m].measure == "users" for m in spec.metrics)
    if months is not None and merged_months:
        month_table, month_params = months
        params = {**params, **month_params, "merged_months": list(merged_months)}
        return fill(_READS["with_months"], table=table, months=month_table, where="\n  ".join(where)), params, dimension
    sql = fill(_READS["day_rows"], table=table, where="\n  ".join(where),
               sketch=", sketch" if wants_users and _merges(spec, dimension) else "")
    return sql, params, dimension


def _merges(spec: QuerySpec, dimension: str) -> bool:
    """Whether a group may hold several rows (then unique users need the sketches)."""
    if spec.granularity is None:
        return True
    return dimension != "" and dimension not in spec.dimensions  # a day over several filtered values


def answer_rows(spec: QuerySpec, dimension: str, rows: list[dict[str, Any]]) -> SketchPiece:
    """The piece's rows (columns ``bucket``, the dimension, each metric's alias) from the sketch rows read."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        key = ((row["day_epoch"],) if spec.granularity else ()) + ((row["value"],) if spec.dimensions else ())
        groups.setdefault(key, []).append(row)
    out, estimated = [], {}
    bound = relative_error_bound(PRECISIONS[dimension])
    for key, members in groups.items():
        answer: dict[str, Any] = {}
        if spec.granularity:
            answer["bucket"] = key[0]
        if spec.dimensions:
            answer[spec.dimensions[0]] = key[-1]
        for metric in spec.metrics:
            measure = METRICS[metric].measure
            if measure == "events":
                value: Any = sum(int(r["events"]) for r in members)
            elif measure == "revenue":  # exactly rounded: any order of the days (a month row carries its days')
                value = math.fsum(float(v) for r in members for v in (r.get("revenues") or [r["revenue"]]))
            elif sum(int(r.get("days") or 1) for r in members) == 1:  # one day's row (or a month row of one day)
                value = int(members[0]["users"])
            else:
                value, exact = merged_estimate([r["sketch"] for r in members])
                if not exact:
                    estimated[metric] = bound
            answer[metric_alias(metric)] = value
        out.append(answer)
    return SketchPiece(out, estimated)
