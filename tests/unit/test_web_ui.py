"""The web dashboard's static side: served by the API, chart library from the installed wheel, no
reference to any other origin in what the page loads."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.routes.web_ui import WEB_DIR, install_web_ui, plotly_bundle


def client() -> TestClient:
    app = FastAPI()
    install_web_ui(app)
    return TestClient(app)


def test_the_root_redirects_to_the_page_and_the_page_and_its_files_are_served():
    c = client()
    assert c.get("/", follow_redirects=False).headers["location"] == "/ui/"
    page = c.get("/ui/")
    assert page.status_code == 200 and "vendor/plotly.min.js" in page.text
    for name in ("app.js", "style.css"):
        assert c.get(f"/ui/{name}").status_code == 200


def test_the_chart_library_comes_from_the_installed_plotly_wheel():
    bundle = plotly_bundle()
    assert bundle is not None and bundle.stat().st_size > 1_000_000
    served = client().get("/ui/vendor/plotly.min.js")
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/javascript")
    assert served.content == bundle.read_bytes()


def test_the_page_references_no_other_origin():
    for path in WEB_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), path.name


def test_chart_text_is_escaped_so_plotly_renders_no_markup():
    """plotText (serving/web/plot_text.js) run by node: every character Plotly's pseudo-HTML reads is an entity."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: apt-get install nodejs (the dashboard's JavaScript is tested with it)")
    values = ['<a href="javascript:alert(1)">y</a>', "<b style='x'>b</b>", "a&b", "x<br>y", "plain", 42]
    script = ("const {plotText} = require(process.argv[1]); "
              f"console.log(JSON.stringify({json.dumps(values)}.map(plotText)));")
    out = subprocess.run([node, "-e", script, str(WEB_DIR / "plot_text.js")], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == ['&lt;a href="javascript:alert(1)"&gt;y&lt;/a&gt;',
                               "&lt;b style='x'&gt;b&lt;/b&gt;", "a&amp;b", "x&lt;br&gt;y", "plain", "42"]


def test_the_page_loads_the_escaping_before_the_dashboard():
    page = (WEB_DIR / "index.html").read_text()
    assert page.index('src="plot_text.js"') < page.index('src="app.js"')
    app = (WEB_DIR / "app.js").read_text()
    # every place a dimension value becomes Plotly text goes through plotText
    assert "labels: keys.map(plotText)" in app and "x: keys.map(plotText)" in app and "name: plotText(t.name)" in app
