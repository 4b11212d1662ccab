"""The kept parts' table: found by write count, statement and parameters; bounded by rows, least recently used first."""

from __future__ import annotations

from serving.query.kept_pieces import KeptPieces


def _rows(n: int, tag: str = "x") -> list[dict]:
    return [{"page": f"/{tag}{i}", "m_events": i} for i in range(n)]


def test_a_part_is_read_once_per_count_statement_and_parameters():
    kept = KeptPieces()
    reads: list[str] = []

    def read(tag: str, n: int = 3):
        return lambda: reads.append(tag) or _rows(n, tag)

    first = kept.rows_of(1, "SELECT a", {"tenant": "t", "builds": [1, 2]}, read("a"))
    again = kept.rows_of(1, "SELECT a", {"builds": [1, 2], "tenant": "t"}, read("never"))
    assert again == first == _rows(3, "a") and again is not first
    again[0]["m_events"] = 99  # a caller's change to its rows never reaches the kept ones
    assert kept.rows_of(1, "SELECT a", {"tenant": "t", "builds": [1, 2]}, read("never"))[0]["m_events"] == 0
    kept.rows_of(2, "SELECT a", {"tenant": "t", "builds": [1, 2]}, read("count moved"))
    kept.rows_of(2, "SELECT a", {"tenant": "t", "builds": [1, 3]}, read("other builds"))
    kept.rows_of(2, "SELECT b", {"tenant": "t", "builds": [1, 3]}, read("other statement"))
    assert reads == ["a", "count moved", "other builds", "other statement"]
    assert (kept.hits, kept.misses) == (2, 4)


def test_the_rows_kept_stay_within_the_bound_dropping_the_least_recently_used():
    kept = KeptPieces(max_rows=10)
    kept.rows_of(1, "a", {}, lambda: _rows(4, "a"))
    kept.rows_of(1, "b", {}, lambda: _rows(4, "b"))
    kept.rows_of(1, "a", {}, lambda: _rows(0))  # a used again: b is now the least recent
    kept.rows_of(1, "c", {}, lambda: _rows(4, "c"))
    assert kept.rows == 8
    misses = kept.misses
    assert kept.rows_of(1, "a", {}, lambda: _rows(0)) == _rows(4, "a") and kept.misses == misses
    assert kept.rows_of(1, "b", {}, lambda: _rows(4, "b2")) == _rows(4, "b2") and kept.misses == misses + 1
    assert kept.rows <= 10
    assert kept.rows_of(1, "huge", {}, lambda: _rows(11)) == _rows(11) and kept.rows <= 10, "larger than the bound"


def test_parts_kept_under_one_count_go_when_a_part_is_read_under_another():
    kept = KeptPieces()
    kept.rows_of(1, "a", {}, lambda: _rows(4, "a"))
    kept.rows_of(2, "b", {}, lambda: _rows(2, "b"))
    assert kept.rows == 2, "the part under count 1 can never be found again"
    assert kept.rows_of(2, "b", {}, lambda: _rows(0)) == _rows(2, "b")
    restarted = (7 << 64) | 0  # a hot node's next incarnation counts from 0 again: no order, only equality
    kept.rows_of(restarted, "b", {}, lambda: _rows(1, "new"))
    assert kept.rows == 1 and kept.rows_of(restarted, "b", {}, lambda: _rows(0)) == _rows(1, "new")
