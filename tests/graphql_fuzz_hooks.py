"""Schemathesis hooks for the GraphQL fuzz (``SCHEMATHESIS_HOOKS``): how to make values of the ``JSON``
scalar, which it cannot guess. Half are query specs over real metrics and dimensions (so the fuzz reaches the
query path), half any JSON at all."""

from __future__ import annotations

from typing import Any

import graphql
import schemathesis
from hypothesis import strategies as st

from serving.query.spec import DIMENSIONS, METRICS


def _node(value: Any) -> graphql.ValueNode:
    if value is None:
        return graphql.NullValueNode()
    if isinstance(value, bool):
        return graphql.BooleanValueNode(value=value)
    if isinstance(value, int):
        return graphql.IntValueNode(value=str(value))
    if isinstance(value, float):
        return graphql.FloatValueNode(value=repr(value))
    if isinstance(value, str):
        return graphql.StringValueNode(value=value)
    if isinstance(value, list):
        return graphql.ListValueNode(values=tuple(_node(v) for v in value))
    return graphql.ObjectValueNode(fields=tuple(
        graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=_node(v)) for k, v in value.items()))


_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
_any_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_names, inner, max_size=4),
    max_leaves=12,
)
_specs = st.fixed_dictionaries(
    {"metrics": st.lists(st.sampled_from(sorted(METRICS)) | st.text(max_size=6), min_size=0, max_size=3)},
    optional={
        "dimensions": st.lists(st.sampled_from(list(DIMENSIONS)) | st.text(max_size=6), max_size=2),
        "range": st.sampled_from(["15m", "1h", "24h", "7d", "1y", "7y", "0m", "x"]),
        "granularity": st.sampled_from(["minute", "hour", "day", "auto", "week"]),
        "limit": st.integers(-5, 20_000),
        "filters": st.lists(st.fixed_dictionaries({"field": st.sampled_from(list(DIMENSIONS)),
                                                   "op": st.sampled_from(["=", "!=", "in", "~"]),
                                                   "values": st.lists(st.text(max_size=4), max_size=3)}),
                            max_size=2),
        "tier": st.sampled_from(["auto", "hot", "warm", "cold", "lukewarm"]),
    },
)

schemathesis.graphql.scalar("JSON", (_specs | _any_json).map(_node))
