"""Pure pieces of the cache index and of the observability layer (the real behaviour is proven on the
stack in tests/integration/test_cache_freshness.py and test_observability.py)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from serving.cache import EntryRange, _overlaps
from serving.observability import JsonFormatter, reason_class


def test_index_members_overlap_half_open_ranges() -> None:
    start = datetime(2026, 11, 23, 10, tzinfo=UTC)
    member = EntryRange("acme", start, start + timedelta(hours=3)).member("lakehouse:q:v1:abc")
    hour = int(start.timestamp())
    assert _overlaps(member, hour + 3600, hour + 7200) == "lakehouse:q:v1:abc"  # an hour inside
    assert _overlaps(member, hour - 3600, hour) is None  # the hour before: [start, end) does not touch it
    assert _overlaps(member, hour + 3 * 3600, hour + 4 * 3600) is None  # the hour after the end
    assert _overlaps(member, hour - 3600, hour + 1) == "lakehouse:q:v1:abc"


def test_rejection_reasons_become_a_bounded_set_of_labels() -> None:
    assert reason_class("missing required field(s): event, user_id") == "missing_field"
    assert reason_class("timestamp 2026-01-01T00:00:00Z is older than the accepted 30 days") == "too_old"
    assert reason_class("timestamp 2027-01-01T00:00:00Z is more than 300 s in the future") == "in_future"
    assert reason_class("timestamp 'x' is not ISO-8601 (e.g. 2026-11-23T10:00:00Z)") == "invalid_timestamp"
    assert reason_class("revenue must be a finite number") == "invalid_revenue"
    assert reason_class("tenant 'b' is not the tenant of this API key ('a'); omit `tenant`") == "wrong_tenant"
    assert reason_class("page is longer than 512 characters") == "invalid_field"


def test_a_log_record_is_one_json_object_with_its_fields() -> None:
    record = logging.LogRecord("lakehouse.access", logging.INFO, __file__, 1, "GET %s %s", ("/v1/topn", 200), None)
    record.fields = {"request_id": "r1", "status": 200, "tenant": "acme"}
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "GET /v1/topn 200" and line["level"] == "info" and line["logger"] == "lakehouse.access"
    assert (line["request_id"], line["status"], line["tenant"]) == ("r1", 200, "acme")
    assert line["ts"].endswith("Z")
