"""GET /v1/dashboards/{id}/report.pdf: read back with Debian's poppler-utils (pdftotext, pdftoppm), the report
holds the ground-truth totals, one page per widget plus the cover, numbered, and every chart page is drawn."""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from serving.reports.pdf import number
from tests.component.seed import Seeded, by_dimension, total, within

OVERVIEW_WIDGETS = 5


def _tools() -> None:
    missing = [t for t in ("pdftotext", "pdftoppm", "pdfinfo") if shutil.which(t) is None]
    assert not missing, f"{missing} not found: `make setup` installs poppler-utils (apt-get install poppler-utils)"


def _inked(png: Path) -> float:
    """The share of the page's pixels that are not near-white."""
    image = Image.open(png).convert("L")
    pixels = list(image.getdata())
    return sum(1 for p in pixels if p < 200) / len(pixels)


def test_the_overview_report_holds_the_truth_and_draws_every_chart(
        client: TestClient, data: dict[str, Seeded], tmp_path: Path) -> None:
    _tools()
    seeded = data["acme"]
    answer = client.get("/v1/dashboards/overview/report.pdf", params={"tenant": "acme", "range": "24h"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/pdf"
    assert 'filename="overview-' in answer.headers["content-disposition"]
    pdf = tmp_path / "overview.pdf"
    pdf.write_bytes(answer.content)

    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
    assert pages == 1 + OVERVIEW_WIDGETS  # the cover, then one page per widget (each fits its page)

    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    # the 24 h window holds the hot events up to 600 minutes old; the next are 1500 minutes old
    events = within(seeded.hot, seeded.now - timedelta(hours=24), seeded.now + timedelta(minutes=1))
    assert events, "the seed must put events in the window"
    cover = text.split("\f")[0]
    assert "Overview" in cover and "Tenant" in cover and "acme" in cover and "24h" in cover and "Generated" in cover
    totals = text.split("\f")[1]
    assert number(total(events, "events")) in totals and number(total(events, "revenue")) in totals
    assert number(total(events, "unique_users")) in totals
    countries = text.split("\f")[3]
    for country, count in by_dimension(events, "country", "events").items():
        assert any(country in line and number(count) in line.split() for line in countries.splitlines()), \
            (country, count, countries)
    for page in range(1, pages + 1):
        assert f"page {page} of {pages}" in text

    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(tmp_path / "page")], check=True)
    rendered = sorted(tmp_path.glob("page-*.png"))
    assert len(rendered) == pages
    for png in rendered[1:5]:  # totals, line, two pies: charts drawn, not just a title
        assert _inked(png) > 0.01, png.name
    assert _inked(rendered[0]) > 0.001  # the cover has text


def test_a_report_is_the_tenants_and_a_bad_view_is_refused(client: TestClient) -> None:
    assert client.get("/v1/dashboards/nope/report.pdf", params={"tenant": "acme"}).status_code == 404
    assert client.get("/v1/dashboards/overview/report.pdf", params={"range": "soon"}).status_code == 400
    assert client.get("/v1/dashboards/overview/report.pdf",
                      params={"filter": "country:US", "tenant": "acme"}).content.startswith(b"%PDF")


@pytest.mark.parametrize("name", ["Umsätze €", "数据"])
def test_names_outside_latin1_still_render(client: TestClient, name: str, tmp_path: Path) -> None:
    _tools()
    tenant = "pdf-names"
    made = client.post("/v1/dashboards", params={"tenant": tenant}, json={"name": name, "widgets": [
        {"id": "t", "title": name, "chart": "bar", "query": {"metrics": ["events"], "dimensions": ["page"]}}]})
    assert made.status_code == 201, made.text
    answer = client.get(f"/v1/dashboards/{made.json()['id']}/report.pdf", params={"tenant": tenant})
    assert answer.status_code == 200
    (tmp_path / "r.pdf").write_bytes(answer.content)
    text = subprocess.run(["pdftotext", str(tmp_path / "r.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "no data in this range" in text  # a new tenant: nothing to draw, said so
