"""The web dashboard's static side: served by the API, chart library from the installed wheel, no
reference to any other origin in what the page loads."""

from __future__ import annotations

import re

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
