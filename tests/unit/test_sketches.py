"""The day sketches' format (common/sketches.py): merges equal the sketch of the union whatever their order or
grouping, small sets stay exact, estimates stay within the stated bound of an exact count, and the hash is pinned."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest

from common.sketches import (
    DENSE,
    SPARSE,
    estimate,
    hash_each,
    hash_ids,
    merge,
    merged_estimate,
    relative_error_bound,
    sketch_of,
)


def _ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"user-{rng.getrandbits(48):012x}" for _ in range(n)]


def test_the_hash_is_blake2b_of_the_utf8_id_read_little_endian() -> None:
    expected = int.from_bytes(hashlib.blake2b("ü-42".encode(), digest_size=8).digest(), "little")
    assert int(hash_each(["ü-42"])[0]) == expected
    assert list(hash_ids(["b", "a", "b"])) == sorted({int(h) for h in hash_each(["a", "b"])})


@pytest.mark.parametrize("precision", [10, 12])
def test_merging_in_any_order_or_grouping_equals_the_sketch_of_the_union(precision: int) -> None:
    days = [_ids(n, seed) for seed, n in enumerate((30, 3_000, 700, 12_000, 5))]
    sketches = [sketch_of(d, precision) for d in days]
    union = sketch_of([i for d in days for i in d], precision)
    assert merge(sketches) == union
    assert merge(list(reversed(sketches))) == union
    assert merge([merge(sketches[:2]), merge(sketches[2:])]) == union


def test_small_sets_stay_exact_through_merges_and_large_ones_become_registers() -> None:
    a, b = _ids(100, 1), _ids(100, 2) + _ids(50, 1)
    merged = merge([sketch_of(a, 12), sketch_of(b, 12)])
    assert merged[:1] == SPARSE
    assert merged_estimate([sketch_of(a, 12), sketch_of(b, 12)]) == (len(set(a) | set(b)), True)
    assert sketch_of(_ids(600, 3), 12)[:1] == DENSE and len(sketch_of(_ids(600, 3), 12)) == 2 + 4096


@pytest.mark.parametrize("precision", [10, 11, 12])
@pytest.mark.parametrize("n", [600, 5_000, 60_000])
def test_estimates_stay_within_the_stated_bound_of_the_exact_count(precision: int, n: int) -> None:
    ids = _ids(n, n + precision)
    exact = len(set(ids))
    parts = [ids[i::7] for i in range(7)]  # as if seven days, each user on one of them
    got, is_exact = merged_estimate([sketch_of(p, precision) for p in parts])
    assert abs(got - exact) / exact <= relative_error_bound(precision), (got, exact)
    assert estimate(sketch_of(ids, precision)) == got
    assert not is_exact or len(merge([sketch_of(ids, precision)])) < 2 ** precision


def test_the_error_is_unbiased_over_many_sets() -> None:
    errors = []
    for seed in range(30):
        ids = _ids(12_000, 1000 + seed)
        errors.append(estimate(sketch_of(ids, 12)) / len(set(ids)) - 1)
    assert abs(float(np.mean(errors))) < 0.01
    assert float(np.std(errors)) < 2 * 1.04 / 64  # about one standard error (1.6 %)


def test_sketches_of_different_precisions_or_foreign_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="different precisions"):
        merge([sketch_of(_ids(10, 1), 10), sketch_of(_ids(10, 1), 12)])
    with pytest.raises(ValueError, match="not a day sketch"):
        estimate(b"X\x0c\x00")
