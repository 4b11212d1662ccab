"""The web dashboard in a real browser (Debian's Chromium, headless): it shows a tenant's true numbers, a
click on a pie slice drills every widget down, new events appear by themselves, and the page loads nothing
from anywhere but the API."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from common.hot_store import HotStore
from common.settings import Settings
from demo.clickstream import Clickstream
from demo.load import post_events
from tests.integration.dashboard_data import TenantData, tenant_with_events
from tests.integration.headless_chromium import HeadlessChromium, chromium_binary

pytestmark = pytest.mark.integration

# A point inside the pie slice labelled `label` of widget `wid`: the slice's own SVG path is hit-tested with
# elementFromPoint over a grid of its bounding box, so the click lands on the slice whatever its shape.
SLICE_POINT = """(() => {
  const plot = document.querySelector('.widget[data-widget-id="%s"] .plot');
  const slice = [...plot.querySelectorAll('g.slice')].find((g) => g.__data__ && g.__data__.label === '%s');
  if (!slice) return null;
  slice.scrollIntoView({block: 'center'});
  const box = slice.querySelector('path.surface').getBoundingClientRect();
  const cx = box.left + box.width / 2, cy = box.top + box.height / 2;
  const hits = [];
  for (let x = box.left + 2; x < box.right; x += 4)
    for (let y = box.top + 2; y < box.bottom; y += 4) {
      const at = document.elementFromPoint(x, y);
      if (at && at.closest('g.slice') === slice) hits.push([Math.hypot(x - cx, y - cy), x, y]);
    }
  hits.sort((a, b) => a[0] - b[0]);
  return hits.length ? {x: hits[0][1], y: hits[0][2]} : null;
})()"""

READ_WIDGETS = """(() => {
  const rows = (wid, sel) => Object.fromEntries([...document.querySelectorAll(
      `.widget[data-widget-id="${wid}"] ${sel} tbody tr`)].map((tr) => [tr.dataset.key, Number(tr.dataset.value)]));
  const plot = document.querySelector('.widget[data-widget-id="by_country"] .plot');
  const pie = plot.data[0];
  return {
    totals: Object.fromEntries([...document.querySelectorAll('.widget[data-widget-id="totals"] .number')]
        .map((n) => [n.dataset.metric, Number(n.dataset.value)])),
    line_total: [...document.querySelectorAll('.widget[data-widget-id="events_over_time"] .total')]
        .reduce((sum, t) => sum + Number(t.dataset.total), 0),
    line_points: document.querySelector('.widget[data-widget-id="events_over_time"] .plot').data[0].y
        .reduce((a, b) => a + b, 0),
    pie_chart: Object.fromEntries(pie.labels.map((label, i) => [label, pie.values[i]])),
    pie_table: rows('by_country', 'table.values'),
    devices: rows('by_device', 'table.values'),
    pages: rows('top_pages', 'table.rows'),
    chips: [...document.querySelectorAll('#filters .chip')].map((c) => `${c.dataset.field}=${c.dataset.value}`),
    url: location.href,
  };
})()"""


@pytest.fixture(scope="module")
def data(api: httpx.Client, hot: HotStore) -> TenantData:
    return tenant_with_events(api, hot, f"web-{uuid.uuid4().hex[:8]}", n=1500, seed=71)


def expected_view(data: TenantData, **where: str) -> dict:
    pages = data.totals("page", **where)
    return {"events": len(data.matching(**where)), "countries": data.totals("country", **where),
            "devices": data.totals("device", **where), "pages": pages}


def assert_shows(seen: dict, want: dict) -> None:
    assert seen["totals"]["events"] == want["events"]
    assert seen["line_total"] == seen["line_points"] == want["events"]
    assert seen["pie_chart"] == seen["pie_table"] == want["countries"]
    assert seen["devices"] == want["devices"]
    top = sorted(want["pages"].values(), reverse=True)[:10]
    assert sorted(seen["pages"].values(), reverse=True) == top
    assert all(want["pages"][page] == n for page, n in seen["pages"].items())


def test_the_dashboard_shows_true_numbers_a_slice_click_drills_down_and_new_events_appear_live(
    settings: Settings, api: httpx.Client, data: TenantData, tmp_path: Path
) -> None:
    binary = chromium_binary()
    if binary is None:
        pytest.fail("Debian's chromium is not installed: run `make setup` (apt-get install chromium)")
    origin = settings.api_url.rstrip("/")
    with HeadlessChromium(binary) as browser:
        browser.navigate(f"{origin}/")  # redirects to /ui/
        browser.wait_until("document.readyState === 'complete' && typeof Plotly === 'object'", what="the page")
        # sign in as a user would: the tenant's API key in the form (kept in localStorage)
        started = time.perf_counter()
        browser.evaluate(f"document.querySelector('#api-key').value = {data.key!r}; "
                         "document.querySelector('#identity').requestSubmit(); true")
        browser.evaluate("document.querySelector('#ranges button[data-range=\"1h\"]').click(); true")
        browser.wait_until("document.body.dataset.state === 'ready' && location.search.includes('range=1h') && "
                           "document.querySelector('#ranges [aria-pressed=\"true\"]').dataset.range === '1h' && "
                           "document.querySelector('.widget[data-widget-id=\"by_country\"] g.slice') !== null",
                           what="the dashboard to render")
        browser.wait_until(f"document.querySelectorAll('.widget[data-widget-id=\"by_country\"] tbody tr').length "
                           f"=== {len(data.totals('country'))}", what="every country in the pie")
        shown_s = time.perf_counter() - started
        before = browser.evaluate(READ_WIDGETS)
        assert_shows(before, expected_view(data))
        assert before["chips"] == []
        browser.screenshot(tmp_path / "dashboard.png")

        renders = int(browser.evaluate("document.body.dataset.renders"))
        point = browser.evaluate(SLICE_POINT % ("by_country", "US"))
        assert point is not None, "the US slice is not on screen"
        started = time.perf_counter()
        browser.click(point["x"], point["y"])
        browser.wait_until(f"document.body.dataset.filters === 'country:US' && document.body.dataset.state === "
                           f"'ready' && Number(document.body.dataset.renders) > {renders}", what="the drill-down")
        drilled_s = time.perf_counter() - started
        after = browser.evaluate(READ_WIDGETS)
        assert after["chips"] == ["country=US"]
        assert "filter=country%3AUS" in after["url"]
        assert_shows(after, expected_view(data, country="US"))
        assert after["pie_chart"] == {"US": len(data.matching(country="US"))}
        browser.screenshot(tmp_path / "drilled.png")

        # removing the chip brings every number back
        browser.evaluate("document.querySelector('#filters .chip button').click(); true")
        browser.wait_until("document.body.dataset.filters === '' && document.body.dataset.state === 'ready'",
                           what="the filter to be removed")
        assert_shows(browser.evaluate(READ_WIDGETS), expected_view(data))

        # live: new events show up without anyone touching the page (pushed over /v1/live, else polled)
        assert browser.evaluate("document.body.dataset.live") == "push"
        more = [e.body for e in Clickstream(seed=73, tenants=(data.tenant,)).batch(
            25, datetime.now(UTC), disorder_s=5, duplicate_rate=0.0, malformed_rate=0.0)]
        started = time.perf_counter()
        post_events(api, more, sync=True)
        browser.wait_until(
            "Number(document.querySelector('.widget[data-widget-id=\"totals\"] .number[data-metric=\"events\"]')"
            f".dataset.value) === {len(data.events) + len(more)}", timeout_s=90, what="the new events on the page")
        live_s = time.perf_counter() - started
        seen = browser.evaluate(READ_WIDGETS)
        assert seen["line_total"] == len(data.events) + len(more)

        urls = browser.requested_urls()
    if os.environ.get("LAKEHOUSE_KEEP_SCREENSHOTS"):
        for name in ("dashboard.png", "drilled.png"):
            (Path(os.environ["LAKEHOUSE_KEEP_SCREENSHOTS"]) / name).write_bytes((tmp_path / name).read_bytes())
    print(f"web dashboard: sign-in to rendered {shown_s:.2f} s, slice click to drilled-down render {drilled_s:.2f} s, "
          f"new events posted to shown {live_s:.1f} s, {len(urls)} requests")
    own = urlsplit(origin).netloc
    foreign = [u for u in urls if not u.startswith(("data:", "blob:")) and urlsplit(u).netloc != own]
    assert foreign == [], f"the page fetched from outside the API: {foreign}"
    assert f"{origin}/ui/vendor/plotly.min.js" in urls
    assert any("/v1/dashboards/overview/data" in u and "filter=country%3AUS" in u for u in urls)
