"""A question that names the tenant's KPIs, answered from the catalogue metrics their formulas read.

The engine runs a *base* question (the catalogue metrics the question and its KPIs need, the same
groups, buckets, dimension filters and fill) and then applies each formula row by row. Value filters,
ordering and the limit on a KPI can only be applied after the formula, so when a question uses them
the base question is asked whole (no limit, no order by value) and they are applied here. Nulls (a
division by zero) never pass a value filter and sort after every number in either direction.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from serving.query.spec import Filter, QuerySpec
from serving.query.sql_compile import effective_order


def cut_by_kpi(spec: QuerySpec) -> bool:
    """Whether the rows are filtered or ordered by a KPI's value (then limited after the formula)."""
    names = {k.name for k in spec.kpis}
    return any(f.on_kpi for f in spec.filters) or any(o.field in names for o in spec.order_by)


def base_spec(spec: QuerySpec) -> QuerySpec:
    """The question without its KPIs: their catalogue metrics instead, everything else alike."""
    names = {k.name for k in spec.kpis}
    needed = [m for m in spec.metrics if m not in names] + [m for k in spec.kpis for m in k.metrics]
    base = replace(spec, metrics=tuple(dict.fromkeys(needed)), kpis=(),
                   filters=tuple(f for f in spec.filters if not f.on_kpi))
    if cut_by_kpi(spec):
        base = replace(base, order_by=(), limit=None)
    return base


def _passes(value: float | None, flt: Filter) -> bool:
    if value is None:
        return False
    low = flt.values[0]
    return {">": value > low, ">=": value >= low, "<": value < low, "<=": value <= low,
            "between": flt.values[0] <= value <= flt.values[-1]}[flt.op]


def _sort_key(field: str, descending: bool) -> Any:
    def key(row: dict[str, Any]) -> tuple[bool, Any]:
        value = row[field]
        # nulls last whichever the direction (reverse=True flips the tuple's first part too)
        return (value is not None, value) if descending else (value is None, value)
    return key


def with_kpis(spec: QuerySpec, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The base question's rows with each KPI's value added, then filtered, ordered and limited as asked."""
    for row in records:
        for kpi in spec.kpis:
            row[kpi.name] = kpi.value(row)
    if not cut_by_kpi(spec):
        return records
    rows = [r for r in records if all(_passes(r[f.field], f) for f in spec.filters if f.on_kpi)]
    for order in reversed(effective_order(spec)):  # stable sorts, least significant key first
        if any(r[order.field] is None for r in rows):
            rows.sort(key=_sort_key(order.field, order.descending), reverse=order.descending)
        else:
            rows.sort(key=lambda r, f=order.field: r[f], reverse=order.descending)
    return rows[: spec.limit] if spec.limit else rows
