"""A dimension value made of markup shows as text in the dashboard's charts (headless Chromium, real Plotly).

No stack needed: a page from a temporary folder loads the installed Plotly bundle and the dashboard's own
``plot_text.js``, draws a pie and a bar chart labelled with hostile values the way ``app.js`` does, and
reads what the browser rendered.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from serving.routes.web_ui import WEB_DIR, plotly_bundle
from tests.integration.headless_chromium import HeadlessChromium, chromium_binary

HOSTILE = ['<a href="https://evil.example/">y</a>', "<b>bold</b>", "a & b"]

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script src="plotly.min.js"></script><script src="plot_text.js"></script></head>
<body><div id="pie"></div><div id="bar"></div><script>
const values = %s;
Plotly.newPlot("pie", [{type: "pie", labels: values.map(plotText), values: [1, 2, 3], textinfo: "label"}],
               {showlegend: true});
Plotly.newPlot("bar", [{type: "bar", x: values.map(plotText), y: [1, 2, 3]}], {xaxis: {type: "category"}});
document.body.dataset.done = "1";
</script></body></html>"""


def test_markup_in_a_dimension_value_shows_as_text_not_as_a_link(tmp_path: Path) -> None:
    binary = chromium_binary()
    if binary is None:
        pytest.fail("Debian's chromium is not installed: run `make setup` (apt-get install chromium)")
    bundle = plotly_bundle()
    assert bundle is not None
    shutil.copy(bundle, tmp_path / "plotly.min.js")
    shutil.copy(WEB_DIR / "plot_text.js", tmp_path / "plot_text.js")
    (tmp_path / "page.html").write_text(PAGE % json.dumps(HOSTILE))
    with HeadlessChromium(binary) as browser:
        browser.navigate((tmp_path / "page.html").as_uri())
        browser.wait_until("document.body !== null && document.body.dataset.done === '1' && "
                           "document.querySelector('#bar .xtick') !== null", what="the charts")
        seen = browser.evaluate("""JSON.stringify({
            links: document.querySelectorAll('svg a').length,
            bold: [...document.querySelectorAll('svg tspan')].filter((t) => t.style.fontWeight === 'bold').length,
            pie: [...document.querySelectorAll('#pie .legendtext')].map((t) => t.textContent),
            ticks: [...document.querySelectorAll('#bar .xtick text')].map((t) => t.textContent)})""")
    shown = json.loads(seen)
    assert shown["links"] == 0 and shown["bold"] == 0
    assert sorted(shown["pie"]) == sorted(HOSTILE)
    assert sorted(shown["ticks"]) == sorted(HOSTILE)
