"""The in-process token buckets that keep the limits while Redis is unreachable (pure logic, a fake clock)."""

from __future__ import annotations

from serving.tenancy.rate_limit import LocalBuckets


def test_local_buckets_allow_the_burst_then_refill_at_the_rate_and_charge_costs():
    now = [100.0]
    buckets = LocalBuckets(clock=lambda: now[0])
    assert [buckets.take("k", 1.0, 3).allowed for _ in range(4)] == [True, True, True, False]
    denied = buckets.take("k", 1.0, 3)
    assert not denied.allowed and denied.retry_after_s == 1
    now[0] += 2.0
    assert buckets.take("k", 1.0, 3, cost=2).allowed
    assert not buckets.take("k", 1.0, 3, cost=2).allowed
    assert buckets.take("other", 1.0, 3, cost=50).allowed  # a cost above the burst costs the whole burst
    assert not buckets.take("other", 1.0, 3).allowed
