"""The web dashboard, served by the API itself: ``/`` → ``/ui/`` (static files of ``serving/web/``).

No build step and nothing fetched from the internet when a user opens it: the chart library (Plotly's
minified bundle) comes from the ``plotly`` wheel pinned in pyproject.toml, installed with the project, and
is served from the installed package at ``/ui/vendor/plotly.min.js``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parents[1] / "web"


def plotly_bundle() -> Path | None:
    """Where the installed plotly wheel keeps its minified JS bundle (None when plotly is not installed)."""
    try:
        path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    except ModuleNotFoundError:
        return None
    return path if path.is_file() else None


def install_web_ui(app: FastAPI) -> None:
    """Add the redirect, the vendored chart library and the static page to ``app`` (order matters: the
    vendor route must come before the static mount that would otherwise answer ``/ui/vendor/…``)."""

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/ui/", status_code=307)

    @app.get("/ui/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> Response:
        bundle = plotly_bundle()
        if bundle is None:
            return JSONResponse(status_code=503, content={
                "error": "the chart library is missing: install the project (`make setup` or `pip install -e .`), "
                         "which brings the pinned plotly wheel"})
        return FileResponse(bundle, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})

    app.mount("/ui", StaticFiles(directory=WEB_DIR, html=True), name="ui")
