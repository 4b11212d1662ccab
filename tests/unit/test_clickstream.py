"""The generator labels what it sends, and the ground truth counts each event id once."""

from datetime import UTC, datetime, timedelta

from common.events import normalize_event
from demo.clickstream import Clickstream
from demo.ground_truth import per_minute, unique_valid

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LIMITS = {"now": NOW, "max_age": timedelta(days=30), "max_future": timedelta(minutes=5)}


def test_labels_agree_with_the_validator():
    batch = Clickstream(seed=1).batch(3000, NOW, duplicate_rate=0.05, malformed_rate=0.05)
    for item in batch:
        try:
            normalize_event(item.body, **LIMITS)
            ok = True
        except ValueError:
            ok = False
        assert ok == (item.kind != "malformed"), item


def test_duplicates_are_counted_once():
    stream = Clickstream(seed=2)
    batch = stream.batch(2000, NOW, duplicate_rate=0.1, malformed_rate=0.0)
    duplicates = sum(item.kind == "duplicate" for item in batch)
    assert duplicates > 100
    assert len(unique_valid(batch)) == 2000 - duplicates
    minutes = per_minute(unique_valid(batch), "acme")
    assert sum(m["events"] for m in minutes.values()) == sum(
        1 for e in unique_valid(batch) if e["tenant"] == "acme")


def test_late_events_are_older_than_the_lateness():
    late = Clickstream(seed=3).late_batch(50, NOW, timedelta(minutes=25))
    assert all(datetime.fromisoformat(e.body["timestamp"].replace("Z", "+00:00")) <= NOW - timedelta(minutes=25)
               for e in late)
