"""The web dashboard in a real browser (Debian's Chromium, headless): it shows a tenant's true numbers, a
click on a pie slice drills every widget down, new events appear by themselves, and the page loads nothing
from anywhere but the API."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest

import tests.analytics_truth as truth
from common.hot_store import HotStore
from common.settings import Settings
from demo.clickstream import Clickstream
from demo.load import post_events
from tests.analytics_clickstream import FUNNEL, clickstream, lay_lake
from tests.analytics_clickstream import lay_hot as lay_analytics_hot
from tests.component.seed import lay_hot, lay_warm
from tests.integration.dashboard_data import TenantData, tenant_with_events
from tests.integration.headless_chromium import HeadlessChromium, chromium_binary, serious_accessibility_violations

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


SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"  # documented in docs/api.md

READ_COMPARISON = """(() => {
  const number = document.querySelector('.widget[data-widget-id="totals"] .number[data-metric="events"]');
  const change = number && number.querySelector('.change');
  const plot = document.querySelector('.widget[data-widget-id="events_over_time"] .plot');
  return {
    events: number ? Number(number.dataset.value) : null,
    change: change ? Number(change.dataset.change) : null,
    change_percent: change ? Number(change.dataset.changePercent) : null,
    change_text: change ? change.textContent : '',
    traces: plot ? plot.data.map((t) => ({name: t.name, x: t.x, y: t.y, mode: t.mode, connectgaps: !!t.connectgaps}))
                 : [],
    label: number ? number.querySelector('.label').textContent : '',
    tooltip: number ? number.querySelector('.label').title : '',
    meta: [...document.querySelectorAll('.widget .meta')].map((m) => m.textContent),
  };
})()"""

# Every element whose box reaches past the viewport's right edge, except inside a container that scrolls
# on its own (a wide table): at a phone's width the page itself must never scroll sideways. And every chart
# whose drawing is taller than its box (it would cover what follows it).
OVERFLOW = """(() => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('body *')].filter((node) => {
    if (node.closest('.scroll') && !node.classList.contains('scroll')) return false;
    const box = node.getBoundingClientRect();
    return box.width > 0 && box.right > width + 1;
  }).map((node) => node.tagName.toLowerCase() + (node.id ? '#' + node.id : '') + '.' + node.className);
  // a chart drawn taller than its box overlaps what follows it (its table, its caption)
  const covered = [...document.querySelectorAll('.plot')].filter((plot) => {
    const svg = plot.querySelector('.main-svg');
    return svg && plot.getBoundingClientRect().height + 1 < svg.getBoundingClientRect().height;
  }).map((plot) => plot.closest('.widget').dataset.widgetId);
  return {scroll: document.documentElement.scrollWidth, width, wide: wide.slice(0, 10), covered};
})()"""


def _planted(tenant: str, at: datetime, i: int) -> dict:
    return {"tenant": tenant, "event": "page_view", "timestamp": at, "event_id": uuid.uuid4().hex,
            "user_id": f"u{i % 7}", "page": "/", "country": "US", "device": "mobile", "revenue": 0.0,
            "properties": "", "received_at": at}


@pytest.fixture(scope="module")
def two_periods(api: httpx.Client, hot: HotStore) -> tuple[str, str, dict[str, int], int]:
    """A tenant whose last 24 hours hold events in two hours only (7 three hours ago, 5 ten hours ago) and
    whose previous 24 hours hold 20: laid into the hot tier as the stream writes them, so the ages are exact."""
    tenant = f"web-cmp-{uuid.uuid4().hex[:8]}"
    api.post("/v1/admin/tenants", json={"id": tenant, "name": tenant}).raise_for_status()
    key = api.post(f"/v1/admin/tenants/{tenant}/keys").raise_for_status().json()["key"]
    now = datetime.now(UTC).replace(microsecond=0)
    current = {"3h": [now - timedelta(hours=3, minutes=1)] * 7, "10h": [now - timedelta(hours=10, minutes=1)] * 5}
    previous = [now - timedelta(hours=30 + i % 10, minutes=5) for i in range(20)]
    stamps = [*current["3h"], *current["10h"], *previous]
    lay_hot(hot, [_planted(tenant, at, i) for i, at in enumerate(stamps)])
    hours = {iso_hour(at): len(group) for group in current.values() for at in group[:1]}
    return tenant, key, hours, len(previous)


def iso_hour(at: datetime) -> str:
    return at.replace(minute=0, second=0, microsecond=0).strftime("%Y-%m-%d %H:%M:%S")


def test_empty_hours_are_zeros_the_totals_compare_with_the_previous_period_and_a_phone_never_scrolls_sideways(
    settings: Settings, two_periods: tuple[str, str, dict[str, int], int]
) -> None:
    binary = chromium_binary()
    if binary is None:
        pytest.fail("Debian's chromium is not installed: run `make setup` (apt-get install chromium)")
    tenant, key, hours, previous_total = two_periods
    origin = settings.api_url.rstrip("/")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with HeadlessChromium(binary) as browser:
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
        browser.navigate(f"{origin}/ui/?range=24h&tz=UTC")
        browser.wait_until("document.readyState === 'complete' && typeof Plotly === 'object'", what="the page")
        browser.evaluate(f"document.querySelector('#api-key').value = {key!r}; "
                         "document.querySelector('#identity').requestSubmit(); true")
        browser.wait_until("document.body.dataset.state === 'ready' && document.querySelector("
                           "'.widget[data-widget-id=\"totals\"] .change') !== null && document.querySelector("
                           "'.widget[data-widget-id=\"events_over_time\"] .plot') !== null", what="the comparison")
        seen = browser.evaluate(READ_COMPARISON)
        current_total = sum(hours.values())
        assert seen["events"] == current_total
        assert seen["change"] == current_total - previous_total
        assert seen["change_percent"] == round((current_total - previous_total) / previous_total * 100, 2)
        assert "vs previous period" in seen["change_text"] and seen["label"] == "Events"  # catalogue label
        catalog = httpx.get(f"{origin}/v1/catalog", headers={"Authorization": f"Bearer {key}"}).json()
        assert seen["tooltip"] == catalog["labels"]["metrics"]["events"]["description"] != ""
        line, *overlay = seen["traces"]
        assert len(line["x"]) in (24, 25), "every hour of the range is a point"
        shown = {x[:19]: y for x, y in zip(line["x"], line["y"], strict=True)}
        assert {x: y for x, y in shown.items() if y} == hours  # the two hours with events, exactly
        assert all(y == 0 for x, y in shown.items() if x not in hours)  # the empty hours are zeros ...
        first, last = sorted(line["x"].index(x) for x in hours)
        assert last - first > 1 and all(y == 0 for y in line["y"][first + 1:last])  # ... drawn between them
        assert "lines" in line["mode"] and not line["connectgaps"]
        assert overlay and "previous period" in overlay[0]["name"] and sum(overlay[0]["y"]) == previous_total
        assert not any("rollups" in m for m in seen["meta"]) and any("live (" in m for m in seen["meta"])
        browser.screenshot(SCREENSHOTS / "overview-desktop.png")
        assert serious_accessibility_violations(browser) == [], "the overview"
        # each chart exports as PNG and SVG, drawn in the page
        assert browser.evaluate("[...document.querySelectorAll('.widget[data-widget-id=\"events_over_time\"] "
                                ".actions button')].map((b) => b.textContent).join()") == "PNG,SVG,CSV"
        assert browser.evaluate("Plotly.toImage(document.querySelector('.widget[data-widget-id=\"events_over_time\"] "
                                ".plot'), {format: 'svg'}).then((url) => url.startsWith('data:image/svg+xml'))")

        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
        browser.evaluate("window.dispatchEvent(new Event('resize')); true")
        time.sleep(1.0)  # Plotly relayouts on resize
        fits = browser.evaluate(OVERFLOW)
        assert fits["scroll"] <= fits["width"] and fits["wide"] == fits["covered"] == [], fits
        browser.screenshot(SCREENSHOTS / "overview-phone.png")
        # a drilled-down view, with a chart's table opened, on the phone
        browser.navigate(f"{origin}/ui/?range=24h&tz=UTC&filter=country:US")
        browser.wait_until("document.body && document.body.dataset.state === 'ready' && "
                           "document.body.dataset.filters === 'country:US' && "
                           "document.querySelector('details.as-table') !== null", what="the drilled-down view")
        browser.evaluate("document.querySelector('details.as-table').open = true; true")
        assert serious_accessibility_violations(browser) == [], "the drilled-down view"
        fits = browser.evaluate(OVERFLOW)
        assert fits["scroll"] <= fits["width"] and fits["wide"] == fits["covered"] == [], fits
    # the API answers both periods in one request, cached like any other answer
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    params = {"metric": "events", "granularity": "hour", "compare": "previous_period",
              "from": (hour - timedelta(hours=24)).isoformat(), "to": (hour - timedelta(hours=1)).isoformat()}
    with httpx.Client(base_url=origin, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
        first, second = (api.get("/v1/timeseries", params=params) for _ in range(2))
    assert first.status_code == 200 and first.json()["previous"] and first.json()["totals"], first.text
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert second.json() == first.json()
    print(f"web dashboard comparison: {current_total} events vs {previous_total} before; screenshots in {SCREENSHOTS}")


def test_error_empty_and_partial_states_are_said_in_words_enter_drills_down_and_numbers_follow_the_locale(
    settings: Settings, two_periods: tuple[str, str, dict[str, int], int]
) -> None:
    binary = chromium_binary()
    if binary is None:
        pytest.fail("Debian's chromium is not installed: run `make setup` (apt-get install chromium)")
    _, key, hours, _ = two_periods
    origin = settings.api_url.rstrip("/")
    status = "document.querySelector('#status').textContent"
    with HeadlessChromium(binary) as browser, httpx.Client(base_url=origin, headers={
            "Authorization": f"Bearer {key}"}, timeout=30) as api:
        browser.send("Emulation.setLocaleOverride", {"locale": "de-DE"})  # a reader in Germany ...
        browser.send("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"})  # ... on a trip to Tokyo
        browser.navigate(f"{origin}/ui/")
        browser.wait_until("document.readyState === 'complete' && typeof Plotly === 'object'", what="the page")
        browser.evaluate("localStorage.setItem('lakehouse.dashboard', JSON.stringify({apiKey: 'not-a-key'})); true")
        browser.navigate(f"{origin}/ui/?dashboard=overview&range=24h")
        browser.wait_until("document.body && document.body.dataset.state === 'error'", what="the error state")
        assert "Check the API key" in browser.evaluate(status)
        zone = browser.evaluate("(() => { const s = document.querySelector('#tz'); "
                                "return [s.value, s.selectedOptions[0].textContent]; })()")
        assert zone == ["Asia/Tokyo", "Asia/Tokyo (this device)"]  # the device's zone by default

        browser.evaluate(f"localStorage.setItem('lakehouse.dashboard', JSON.stringify({{apiKey: {key!r}}})); true")
        # loading: the dashboard's request held back by the browser until the page has been read
        browser.send("Fetch.enable", {"patterns": [{"urlPattern": "*/v1/dashboards/overview/data*"}]})
        browser.navigate(f"{origin}/ui/?dashboard=overview&range=24h&tz=UTC")
        held = _paused(browser)
        loading = browser.evaluate("[document.body.dataset.state, document.querySelector('#widgets')"
                                   ".getAttribute('aria-busy'), document.querySelector('#status').textContent]")
        assert loading == ["loading", "true", "Loading…"], loading
        browser.send("Fetch.continueRequest", {"requestId": held})
        browser.send("Fetch.disable")
        browser.wait_until("document.body.dataset.state === 'ready'", what="the held request answered")
        browser.navigate(f"{origin}/ui/?dashboard=overview&range=1h&tz=UTC")  # the events are hours old
        browser.wait_until("document.body && document.body.dataset.state === 'ready'", what="the empty hour")
        assert browser.evaluate("document.querySelector('.widget[data-widget-id=\"by_country\"] .empty')"
                                ".textContent") == "No events in this range and filters."

        board = api.post("/v1/dashboards", json={"name": "Minutes", "widgets": [
            {"id": "n", "chart": "number", "query": {"metrics": ["events", "revenue"]}},
            {"id": "m", "chart": "line", "query": {"metrics": ["events"], "granularity": "minute", "range": "1h"}}]})
        assert board.status_code == 201, board.text
        browser.navigate(f"{origin}/ui/?dashboard={board.json()['id']}&range=7y&tz=UTC")
        browser.wait_until("document.body && document.body.dataset.state === 'ready' && "
                           "document.querySelector('#dashboard').value !== 'overview'", what="the partial view")
        assert browser.evaluate("document.body.dataset.partial") == "true"
        assert "1 of 2 widgets cannot be shown for this range" in browser.evaluate(status)
        assert "coarser granularity" in browser.evaluate(
            "document.querySelector('.widget[data-widget-id=\"m\"] .error').textContent")
        numbers = browser.evaluate("Object.fromEntries([...document.querySelectorAll('.widget[data-widget-id=\"n\"] "
                                   ".number')].map((n) => [n.dataset.metric, n.querySelector('.value').textContent]))")
        assert numbers["revenue"] == "0,00"  # German decimals
        api.delete(f"/v1/dashboards/{board.json()['id']}")

        browser.navigate(f"{origin}/ui/?dashboard=overview&range=24h&tz=UTC")
        browser.wait_until("document.body && document.body.dataset.state === 'ready' && document.querySelector("
                           "'.widget[data-widget-id=\"by_country\"] tr.drill') !== null", what="the overview")
        assert browser.evaluate("(() => { const row = document.querySelector('.widget[data-widget-id=\"by_country\"] "
                                "tr.drill'); row.focus(); return document.activeElement === row; })()")
        for kind in ("keyDown", "keyUp"):
            browser.send("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code": "Enter",
                                                   "windowsVirtualKeyCode": 13})
        browser.wait_until("document.body.dataset.filters === 'country:US' && document.body.dataset.state === 'ready'",
                           what="the drill-down by the keyboard")
        assert browser.evaluate("document.querySelector('.widget[data-widget-id=\"totals\"] "
                                ".number[data-metric=\"events\"]').dataset.value") == str(sum(hours.values()))


NEW_YORK = "America/New_York"


def test_a_new_york_day_series_in_the_page_equals_the_events_bucketed_by_new_york_dates_on_hot_and_lake_days(
    settings: Settings, api: httpx.Client, hot: HotStore
) -> None:
    """Events at 03:30 UTC (the evening before in New York) on recent days (hot tier) and on days 100–300
    days back (the lake's warm hourly rollups); the viewer picks New York and a year: every day of the line
    is that zone's calendar day, across both tiers, and daylight saving time moves nothing."""
    binary = chromium_binary()
    if binary is None:
        pytest.fail("Debian's chromium is not installed: run `make setup` (apt-get install chromium)")
    tenant = f"web-tz-{uuid.uuid4().hex[:8]}"
    api.post("/v1/admin/tenants", json={"id": tenant, "name": tenant}).raise_for_status()
    key = api.post(f"/v1/admin/tenants/{tenant}/keys").raise_for_status().json()["key"]
    today = datetime.now(UTC).replace(hour=3, minute=30, second=0, microsecond=0)
    recent = [_planted(tenant, today - timedelta(days=d, minutes=i), i) for d in (2, 3, 5) for i in range(d)]
    old = [_planted(tenant, today - timedelta(days=d, minutes=i), i)
           for d in (100, 160, 250, 300) for i in range(d % 7)]
    lay_hot(hot, recent)
    lay_warm(settings, old)
    zone = ZoneInfo(NEW_YORK)
    truth: dict[str, int] = {}
    for e in recent + old:
        day = e["timestamp"].astimezone(zone).strftime("%Y-%m-%d 00:00:00")
        truth[day] = truth.get(day, 0) + 1
    assert all(e["timestamp"].astimezone(zone).date() != e["timestamp"].date() for e in recent + old)
    origin = settings.api_url.rstrip("/")
    with HeadlessChromium(binary) as browser:
        browser.navigate(f"{origin}/ui/")
        browser.wait_until("document.readyState === 'complete' && typeof Plotly === 'object'", what="the page")
        browser.evaluate(f"localStorage.setItem('lakehouse.dashboard', JSON.stringify({{apiKey: {key!r}}})); true")
        browser.navigate(f"{origin}/ui/?dashboard=overview&range=24h&tz=UTC&compare=false")
        browser.wait_until("document.body && document.body.dataset.state === 'ready'", what="the overview")
        renders = int(browser.evaluate("document.body.dataset.renders"))
        _choose(browser, "#tz", NEW_YORK)
        _click(browser, "#ranges button[data-range='1y']")
        browser.wait_until(f"document.body.dataset.state === 'ready' && Number(document.body.dataset.renders) > "
                           f"{renders} && location.search.includes('range=1y') && "
                           "location.search.includes('tz=America%2FNew_York')", timeout_s=60, what="a year in New York")
        seen = browser.evaluate("""(() => {
          const plot = document.querySelector('.widget[data-widget-id="events_over_time"] .plot');
          const meta = document.querySelector('.widget[data-widget-id="events_over_time"] .meta');
          return {x: plot.data[0].x, y: plot.data[0].y, sources: meta.dataset.sources, meta: meta.textContent};
        })()""")
    shown = dict(zip(seen["x"], seen["y"], strict=True))
    assert {x: y for x, y in shown.items() if y} == truth  # each event on its New York day, hot and lake alike
    assert all(x.endswith(" 00:00:00") for x in shown) and len(shown) >= 365
    assert "warm:rollups_hourly" in seen["sources"] and "hot:rollups_1h" in seen["sources"], seen
    assert "America/New York" in seen["meta"]


def _paused(browser: HeadlessChromium, timeout_s: float = 30.0) -> str:
    """The id of the first request the browser holds back (``Fetch.enable``), once it is held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        browser.evaluate("1")  # collects the events that arrived meanwhile
        held = [e["params"]["requestId"] for e in browser.events if e["method"] == "Fetch.requestPaused"]
        if held:
            return held[0]
        time.sleep(0.1)
    raise AssertionError("the dashboard's request was never sent")


def _type(browser: HeadlessChromium, selector: str, text: str) -> None:
    """Focus a field, clear it and type ``text`` as key input (CDP insertText fires input events)."""
    browser.evaluate(f"(() => {{ const f = document.querySelector({selector!r}); f.focus(); f.select(); "
                     "return true; })()")
    browser.send("Input.insertText", {"text": text})


def _choose(browser: HeadlessChromium, selector: str, value: str) -> None:
    """Pick an option of a select as the keyboard does (the value changes, a change event fires)."""
    browser.evaluate(f"(() => {{ const s = document.querySelector({selector!r}); s.focus(); s.value = {value!r}; "
                     "s.dispatchEvent(new Event('change', {bubbles: true})); return true; })()")


def _click(browser: HeadlessChromium, selector: str) -> None:
    box = browser.evaluate(f"(() => {{ const b = document.querySelector({selector!r}); b.scrollIntoView({{block: "
                           "'center'}); const r = b.getBoundingClientRect(); return {x: r.left + r.width / 2, "
                           "y: r.top + r.height / 2}; })()")
    browser.click(box["x"], box["y"])


def drive_editor(browser: HeadlessChromium, origin: str, api: httpx.Client) -> None:
    """Build a dashboard in the page's editor by clicks and typing, compare it with what the API saves for the
    same definition, reload, then lose a race with a second editor and see the refusal."""
    browser.navigate(f"{origin}/ui/?range=24h&tz=UTC")
    browser.wait_until("document.body && document.body.dataset.state === 'ready'", what="the page")
    _click(browser, "#edit")
    browser.wait_until("!document.querySelector('#editor').hidden && "
                       "document.querySelectorAll('#ed-widgets li').length === 5", what="the editor on the overview")
    _click(browser, "#ed-new")
    _type(browser, "#ed-name", "Checkout funnel")
    _type(browser, "#ed-widgets li:nth-child(1) .ed-title", "Purchases")
    _choose(browser, "#ed-widgets li:nth-child(1) .ed-metric", "purchases")
    _click(browser, "#ed-add")
    _type(browser, "#ed-widgets li:nth-child(2) .ed-title", "Revenue by country")
    _choose(browser, "#ed-widgets li:nth-child(2) .ed-chart", "pie")
    _choose(browser, "#ed-widgets li:nth-child(2) .ed-metric", "revenue")
    _choose(browser, "#ed-widgets li:nth-child(2) .ed-dimension", "country")
    _type(browser, "#ed-widgets li:nth-child(2) .ed-filters", "device:mobile, page!=/a|/b")
    _click(browser, "#ed-add")
    _type(browser, "#ed-widgets li:nth-child(3) .ed-title", "Sign-ups over time")
    _choose(browser, "#ed-widgets li:nth-child(3) .ed-metric", "signups")
    _choose(browser, "#ed-widgets li:nth-child(3) .ed-range", "7d")
    _click(browser, "#ed-widgets li:nth-child(3) .ed-buttons button:first-child")  # moved up: second
    _click(browser, "#ed-widgets li:nth-child(1) .ed-duplicate")
    _click(browser, "#ed-widgets li:nth-child(2) .ed-remove")  # the copy goes again
    _click(browser, "#ed-save-new")
    browser.wait_until("document.body.dataset.editor === 'saved' && document.body.dataset.state === 'ready'",
                       what="the new dashboard saved and shown")
    board_id = browser.evaluate("state.dashboard")
    saved = api.get(f"/v1/dashboards/{board_id}").json()
    by_api = api.post("/v1/dashboards", json={"name": "Checkout funnel", "widgets": [
        {"title": "Purchases", "chart": "number", "query": {"metrics": ["purchases"], "range": "24h"}},
        {"title": "Sign-ups over time", "chart": "line",
         "query": {"metrics": ["signups"], "range": "7d", "granularity": "auto", "fill": "auto"}},
        {"title": "Revenue by country", "chart": "pie",
         "query": {"metrics": ["revenue"], "range": "24h", "dimensions": ["country"],
                   "filters": [{"field": "device", "value": "mobile"},
                               {"field": "page", "op": "not in", "values": ["/a", "/b"]}],
                   "order_by": [{"field": "revenue", "direction": "desc"}], "limit": 20}}]}).json()
    assert saved["name"] == by_api["name"] and saved["widgets"] == by_api["widgets"]
    api.delete(f"/v1/dashboards/{by_api['id']}")

    browser.navigate(f"{origin}/ui/?dashboard={board_id}&range=24h&tz=UTC")
    browser.wait_until("document.body && document.body.dataset.state === 'ready' && "
                       f"document.querySelector('#dashboard').value === {board_id!r} && "
                       "document.querySelectorAll('.widget').length === 3", what="the saved dashboard after reload")
    assert browser.evaluate("[...document.querySelectorAll('.widget h2')].map((h) => h.textContent)") == [
        "Purchases", "Sign-ups over time", "Revenue by country"]

    _click(browser, "#edit")
    browser.wait_until("!document.querySelector('#editor').hidden && "
                       "document.querySelector('#ed-version').textContent === 'version 1'", what="the editor")
    other = api.put(f"/v1/dashboards/{board_id}", headers={"If-Match": '"1"'},
                    json={"name": "Renamed elsewhere", "widgets": saved["widgets"]})
    assert other.status_code == 200
    _type(browser, "#ed-name", "Renamed here")
    _click(browser, "#ed-save")
    browser.wait_until("document.body.dataset.editor === 'error'", what="the conflict message")
    assert "Someone else saved this dashboard" in browser.evaluate("document.querySelector('#ed-message').textContent")
    assert api.get(f"/v1/dashboards/{board_id}").json()["name"] == "Renamed elsewhere"  # nothing overwritten
    assert serious_accessibility_violations(browser) == [], "the editor"

    # reopened, the editor has the other editor's version: the rename saves, then the dashboard is deleted
    _click(browser, "#ed-close")
    _click(browser, "#edit")
    browser.wait_until("!document.querySelector('#editor').hidden && "
                       "document.querySelector('#ed-version').textContent === 'version 2'", what="the fresh version")
    _type(browser, "#ed-name", "Renamed here")
    _click(browser, "#ed-save")
    browser.wait_until("document.body.dataset.editor === 'saved' && "
                       "[...document.querySelectorAll('#dashboard option')].some((o) => o.text === 'Renamed here')",
                       what="the rename saved")
    renamed = api.get(f"/v1/dashboards/{board_id}").json()
    assert renamed["name"] == "Renamed here"
    _click(browser, "#ed-save-new")  # duplicated: a new dashboard with the same widgets, opened in the editor
    browser.wait_until(f"document.body.dataset.editor === 'saved' && state.dashboard !== {board_id!r}",
                       what="the copy saved")
    copy_id = browser.evaluate("state.dashboard")
    copy = api.get(f"/v1/dashboards/{copy_id}").json()
    assert (copy["name"], copy["widgets"], copy["version"]) == ("Renamed here", renamed["widgets"], 1)
    _click(browser, "#ed-delete")  # the first click asks again, the second deletes the copy
    assert api.get(f"/v1/dashboards/{copy_id}").status_code == 200
    _click(browser, "#ed-delete")
    browser.wait_until("document.querySelector('#editor').hidden && document.querySelector('#dashboard').value === "
                       "'overview' && document.body.dataset.state === 'ready'", what="the overview after the delete")
    assert api.get(f"/v1/dashboards/{copy_id}").status_code == 404
    assert api.get(f"/v1/dashboards/{board_id}").status_code == 200  # the original stays
    api.delete(f"/v1/dashboards/{board_id}")


def test_a_dashboard_built_in_the_editor_is_what_the_api_saves_and_a_conflicting_save_is_refused(
    settings: Settings, two_periods: tuple[str, str, dict[str, int], int]
) -> None:
    binary = chromium_binary()
    if binary is None:
        pytest.fail("Debian's chromium is not installed: run `make setup` (apt-get install chromium)")
    tenant, key, _, _ = two_periods
    origin = settings.api_url.rstrip("/")
    with HeadlessChromium(binary) as browser, httpx.Client(base_url=origin, headers={
            "Authorization": f"Bearer {key}"}, timeout=30) as api:
        browser.navigate(f"{origin}/ui/")
        browser.wait_until("document.readyState === 'complete' && typeof Plotly === 'object'", what="the page")
        browser.evaluate(f"localStorage.setItem('lakehouse.dashboard', JSON.stringify({{apiKey: {key!r}}})); true")
        drive_editor(browser, origin, api)


# ---- product-analytics widgets ---------------------------------------------------------------------------

ANALYTICS_WIDGETS = [
    {"id": "checkout", "title": "Checkout funnel", "chart": "funnel", "query": {"steps": FUNNEL}},
    {"id": "cohorts", "title": "Daily retention", "chart": "retention",
     "query": {"start_event": "page_view", "period": "day", "periods": 5}},
    {"id": "after_view", "title": "After a page view", "chart": "paths",
     "query": {"start_event": "page_view", "steps": 2}},
    {"id": "visits", "title": "Visits", "chart": "sessions", "query": {}},
]

READ_ANALYTICS = """(() => {
  const w = (id) => document.querySelector(`.widget[data-widget-id="${id}"]`);
  const funnel = w('checkout').querySelector('.plot').data[0];
  const heat = w('cohorts').querySelector('.plot').data[0];
  return {
    funnel_rows: [...w('checkout').querySelectorAll('.funnel-steps tbody tr')].map((tr) => Number(tr.dataset.count)),
    funnel_bars: funnel.y, funnel_text: funnel.text,
    retention: Object.fromEntries([...w('cohorts').querySelectorAll('.retention-grid tbody tr')].map((tr) =>
        [tr.dataset.cohort, [...tr.querySelectorAll('td')].map((td) => Number(td.dataset.count))])),
    heat_y: heat.y, heat_z: heat.z,
    edges: [...w('after_view').querySelectorAll('.path-edges tbody tr')].map((tr) =>
        [Number(tr.dataset.step), tr.dataset.from, tr.dataset.to, Number(tr.dataset.sessions)]),
    sankey: w('after_view').querySelector('.plot').data[0].link.value.reduce((a, b) => a + b, 0),
    sessions: Number(w('visits').querySelector('.number[data-metric="sessions"]').dataset.value),
  };
})()"""

# The middle of the funnel's bar for step `k` (1-based), for a real mouse click.
FUNNEL_BAR = """(() => {
  const bar = document.querySelectorAll('.widget[data-widget-id="checkout"] .plot g.point path')[%d];
  bar.scrollIntoView({block: 'center'});
  const box = bar.getBoundingClientRect();
  return {x: box.left + box.width / 2, y: box.top + box.height / 2};
})()"""


@pytest.fixture(scope="module")
def product_clickstream(api: httpx.Client, hot: HotStore, settings: Settings) -> tuple[str, str, list[dict]]:
    """A tenant whose last days hold visitors who browse, add to cart, check out and come back (with the
    hand-made cases of tests/analytics_clickstream.py), in the hot tier and in the lake as the batch layer
    would also hold them: whichever engine answers, the truth is the same."""
    tenant = f"web-pa-{uuid.uuid4().hex[:8]}"
    api.post("/v1/admin/tenants", json={"id": tenant, "name": tenant}).raise_for_status()
    key = api.post(f"/v1/admin/tenants/{tenant}/keys").raise_for_status().json()["key"]
    events = clickstream(tenant, "w", datetime.now(UTC) - timedelta(days=6), 5, seed=9).events
    lay_analytics_hot(hot, events)
    lay_lake(settings, events, tenant)
    return tenant, key, events


def test_the_funnel_and_retention_widgets_show_the_truth_and_a_click_on_a_step_lists_who_dropped_off(
    settings: Settings, product_clickstream: tuple[str, str, list[dict]]
) -> None:
    binary = chromium_binary()
    if binary is None:
        pytest.fail("Debian's chromium is not installed: run `make setup` (apt-get install chromium)")
    tenant, key, events = product_clickstream
    origin = settings.api_url.rstrip("/")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with HeadlessChromium(binary) as browser, httpx.Client(base_url=origin, headers={
            "Authorization": f"Bearer {key}"}, timeout=30) as api:
        made = api.post("/v1/dashboards", json={"name": "Product", "widgets": ANALYTICS_WIDGETS})
        assert made.status_code == 201, made.text
        board = made.json()["id"]
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
        browser.navigate(f"{origin}/ui/")
        browser.wait_until("document.readyState === 'complete' && typeof Plotly === 'object'", what="the page")
        browser.evaluate(f"localStorage.setItem('lakehouse.dashboard', JSON.stringify({{apiKey: {key!r}}})); true")
        started = time.perf_counter()
        browser.navigate(f"{origin}/ui/?dashboard={board}&range=7d&tz=UTC")
        browser.wait_until("document.body && document.body.dataset.state === 'ready' && "
                           "document.querySelectorAll('.widget[data-state=\"ready\"]').length === 4",
                           timeout_s=90, what="the four analytics widgets")
        shown_s = time.perf_counter() - started
        seen = browser.evaluate(READ_ANALYTICS)
        end = datetime.now(UTC)
        start = end - timedelta(days=7)  # every event lies days inside the range: the seconds between do not matter

        expected = truth.funnel(events, FUNNEL, start, end)
        counts = [s["count"] for s in expected["steps"]]
        assert counts[-1] > 0 and counts == sorted(counts, reverse=True)
        assert seen["funnel_rows"] == seen["funnel_bars"] == counts
        shown_percent = [float(t.split("·")[1].strip(" %\u00a0")) for t in seen["funnel_text"]]
        assert all(abs(p - 100 * c / counts[0]) <= 0.05 + 1e-9 for p, c in zip(shown_percent, counts, strict=True))

        grid = truth.retention(events, start, end, start_event="page_view", return_event="page_view",
                               period="day", periods=5)
        assert seen["retention"] == {cohort.date().isoformat(): row for (cohort, _), row in grid.items()}
        assert seen["heat_y"] == sorted(seen["retention"])
        assert seen["heat_z"] == [[100 * n / row[0] for n in row] for _, row in sorted(seen["retention"].items())]

        edges = truth.paths(events, start, end, start_event="page_view", steps=2)
        assert sorted(map(tuple, seen["edges"])) == sorted((*k, n) for k, n in edges.items())
        assert seen["sankey"] == sum(edges.values())
        assert seen["sessions"] == truth.session_metrics(events, start, end)[None]["sessions"]

        # a real click on the second bar lists the users who reached step 2 and went no further
        point = browser.evaluate(FUNNEL_BAR % 1)
        browser.click(point["x"], point["y"])
        browser.wait_until("document.querySelector('.widget[data-widget-id=\"checkout\"] .dropoff')"
                           ".dataset.state === 'ready'", what="the users who dropped off after step 2")
        listed = browser.evaluate("({step: document.querySelector('.dropoff').dataset.step, users: [...document."
                                  "querySelectorAll('.dropoff li')].map((li) => li.textContent)})")
        assert listed == {"step": "2", "users": expected["dropped"][2]} and listed["users"]
        # the same list from the keyboard: the step's button in the table
        browser.evaluate("document.querySelector('.funnel-steps tr[data-step=\"3\"] .dropoff-button').click(); true")
        browser.wait_until("document.querySelector('.dropoff').dataset.step === '3' && "
                           "document.querySelector('.dropoff').dataset.state === 'ready'", what="step 3's drop-offs")
        assert browser.evaluate("[...document.querySelectorAll('.dropoff li')].map((li) => li.textContent)") == \
            expected["dropped"][3]
        browser.screenshot(SCREENSHOTS / "analytics-desktop.png")
        violations = serious_accessibility_violations(browser)
        assert violations == [], ("the analytics widgets", violations)

        # the editor shows an analytics widget's own fields and adds one by clicks and typing
        _click(browser, "#edit")
        browser.wait_until("!document.querySelector('#editor').hidden && "
                           "document.querySelectorAll('#ed-widgets li').length === 4", what="the editor")
        assert browser.evaluate("document.querySelector('#ed-widgets li:nth-child(1) .ed-steps').value") == \
            "page_view, add_to_cart, checkout, purchase"
        _click(browser, "#ed-add")
        _choose(browser, "#ed-widgets li:nth-child(5) .ed-chart", "funnel")
        _type(browser, "#ed-widgets li:nth-child(5) .ed-title", "Straight to purchase")
        _type(browser, "#ed-widgets li:nth-child(5) .ed-steps", "page_view")
        _click(browser, "#ed-save")
        browser.wait_until("document.body.dataset.editor === 'error'", what="the one-step funnel refused")
        assert "at least 2" in browser.evaluate("document.querySelector('#ed-message').textContent")
        _type(browser, "#ed-widgets li:nth-child(5) .ed-steps", "page_view, purchase")
        _choose(browser, "#ed-widgets li:nth-child(5) .ed-window", "1d")
        violations = serious_accessibility_violations(browser)
        assert violations == [], ("the editor with analytics widgets", violations)
        _click(browser, "#ed-save")
        browser.wait_until("document.body.dataset.editor === 'saved' && document.body.dataset.state === 'ready' && "
                           "document.querySelectorAll('.widget[data-state=\"ready\"]').length === 5",
                           timeout_s=60, what="the saved funnel drawn")
        saved = api.get(f"/v1/dashboards/{board}").json()["widgets"]
        assert saved[:4] == made.json()["widgets"]  # untouched widgets are kept exactly
        assert saved[4] == {"id": "w1", "title": "Straight to purchase", "chart": "funnel", "query": {
            "steps": [{"event": "page_view"}, {"event": "purchase"}], "window": "1d", "range": "24h"}}
        _click(browser, "#ed-close")

        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
        browser.evaluate("window.dispatchEvent(new Event('resize')); "
                         "document.querySelectorAll('details.as-table').forEach((d) => { d.open = true; }); true")
        time.sleep(1.0)  # Plotly relayouts on resize
        fits = browser.evaluate(OVERFLOW)
        assert fits["scroll"] <= fits["width"] and fits["wide"] == fits["covered"] == [], fits
        violations = serious_accessibility_violations(browser)
        assert violations == [], ("the analytics widgets on a phone, tables open", violations)
        browser.screenshot(SCREENSHOTS / "analytics-phone.png")
        api.delete(f"/v1/dashboards/{board}")
    print(f"analytics widgets: rendered in {shown_s:.2f} s; funnel {counts}, {len(grid)} cohorts, "
          f"{len(edges)} path edges")
