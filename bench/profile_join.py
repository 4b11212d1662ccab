"""Benchmark: the cost of joining user profiles at query time (the decision in docs/product-analytics.md).

Lays ``--users`` profiles (two properties each) into an embedded chDB hot store in a temporary folder and
times, through ``serving.analytics.profiles.ProfileStore`` (what the engines call):

* loading them (one Arrow insert);
* the lookup of one property for every profiled user, the first time and then kept (the stamp query only);
* the lookup again after an upsert of one user (recomputed);
* adding the looked-up column to ``--users`` funnel rows (the Python side of the join);
* an upsert of 10,000 users through the store (versions read, next versions written).

Usage: ``python -m bench.profile_join [--users 1000000]``. Figures are printed and written to
``bench/results/profile_join.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from common.hot_schema import migrate
from common.hot_store import ClickHouseHotStore
from serving.analytics.profiles import ProfileStore

RESULTS = Path(__file__).parent / "results" / "profile_join.json"
PLANS = ("free", "pro", "team")


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = action()
    return round(time.perf_counter() - started, 3), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    n = parser.parse_args().users
    figures: dict[str, object] = {"users": n, "machine": platform.machine(), "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as home:
        store = ClickHouseHotStore(f"chdb://{home}/hot")
        try:
            migrate(store)
            now = datetime.now(UTC)
            table = pa.table({
                "tenant": ["bench"] * n, "user_id": [f"u{i}" for i in range(n)],
                "version": pa.array([1] * n, pa.uint64()),
                "properties": pa.array([[("plan", PLANS[i % 3]), ("campaign", f"c{i % 50}")] for i in range(n)],
                                       pa.map_(pa.string(), pa.string())),
                "deleted": pa.array([0] * n, pa.uint8()), "updated": pa.array([now] * n, pa.timestamp("ms", tz="UTC")),
                "source": ["bench"] * n})
            figures["load_s"], _ = timed(lambda: store.insert_arrow("user_profiles", table))
            profiles = ProfileStore(store)
            figures["lookup_first_s"], values = timed(lambda: profiles.property("bench", "plan"))
            figures["lookup_kept_s"], _ = timed(lambda: profiles.property("bench", "plan"))
            profiles.upsert("bench", [("u1", {"plan": "team"})])
            figures["lookup_after_upsert_s"], _ = timed(lambda: profiles.property("bench", "plan"))
            rows = [f"u{i}" for i in range(0, 2 * n, 2)]  # half of them profiled
            figures["enrich_rows_s"], _ = timed(lambda: pa.array([values.get(u, "") for u in rows], pa.string()))
            figures["upsert_10k_s"], _ = timed(lambda: profiles.upsert(
                "bench", [(f"u{i}", {"plan": "pro"}) for i in range(10_000)]))
        finally:
            store.close()
    for name, value in figures.items():
        print(f"{name:>24}: {value}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
