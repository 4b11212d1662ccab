"""The funnel answer computed on the SQL walk's columns (``funnel_sql.walked_body``) equals the one the Python
walk's conversions give (``sequences.funnel_body``) to the last bit: counts, conversion rates, mean and
median times, breakdown rows with "other" (also when "other" is itself a top value), odd and even counts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from serving.analytics import definitions as defs
from serving.analytics.funnel_sql import conversions, walked_body
from serving.analytics.sequences import funnel_body

START = datetime(2026, 5, 1, tzinfo=UTC)
STEPS = [{"event": "a"}, {"event": "b"}, {"event": "c"}, {"event": "d"}]


def _walk_table(rng: random.Random, units: int, values: list[str]) -> pa.Table:
    """Rows as ``funnel_walk`` returns them: a level of 1 to 4 and level - 1 gaps in milliseconds."""
    rows = []
    for i in range(units):
        level = rng.randint(1, 4)
        rows.append({"user_id": f"u{i}", "unit": "", "level": level, "value": rng.choice(values),
                     "gaps": [rng.choice([0, 1, 999, 1000, 1001, rng.randint(0, 10**9)]) for _ in range(level - 1)]})
    schema = pa.schema([("user_id", pa.string()), ("unit", pa.string()), ("level", pa.uint8()),
                        ("gaps", pa.list_(pa.int64())), ("value", pa.string())])
    return pa.Table.from_pylist(rows, schema)


@pytest.mark.parametrize("layout", ["list", "large-list-in-chunks"])
@pytest.mark.parametrize("units", [0, 1, 2, 7, 500, 2001])
@pytest.mark.parametrize("breakdown", [None, (3, ["x", "y", "z", "w", ""]), (2, ["other", "x", "other", "y", "z"]),
                                       (10, ["x", "y"])])
def test_columns_answer_as_the_conversions_do(units, breakdown, layout):
    """``layout``: the walk's gaps as one list array, or as large lists in two chunks (the step times are
    gathered from the lists' offsets, which must hold either way)."""
    rng = random.Random(units * 7 + (0 if breakdown is None else breakdown[0]))
    raw = {"steps": STEPS, "window": timedelta(days=1)}
    values = [""]
    if breakdown is not None:
        raw |= {"breakdown": "country", "breakdown_limit": breakdown[0]}
        values = breakdown[1]
    spec = defs.funnel_spec(raw, START, START + timedelta(days=7))
    table = _walk_table(rng, units, values)
    if layout != "list":
        cut = units // 3
        table = pa.concat_tables([table.slice(0, cut), table.slice(cut)])
        table = table.set_column(3, "gaps", table["gaps"].cast(pa.large_list(pa.int64())))
    assert walked_body(spec, table) == funnel_body(spec, conversions(table))
