"""Every route of the app is exercised by this tier, and answers successfully at least once.

Runs last (``conftest.pytest_collection_modifyitems``) and reads what the session's requests recorded
(``conftest.ROUTES``). A new endpoint without a component test fails here, naming it."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from tests.component.conftest import ROUTES, partial_run
from tests.component.harness import http_routes


def test_every_route_of_the_app_was_exercised_and_answered_successfully(app: FastAPI) -> None:
    if partial_run():
        pytest.skip(f"run the whole component tier to judge route coverage ({'; '.join(partial_run())})")
    routes = http_routes(app)
    assert len(routes) >= 35, sorted(routes)  # the enumeration itself must see the routers' routes
    never = sorted(routes - set(ROUTES.answered))
    assert not never, f"routes no component test requests: {never}"
    unsuccessful = sorted(r for r in routes if not any(200 <= s < 400 or s == 101 for s in ROUTES.answered[r]))
    assert not unsuccessful, (f"routes never answered 2xx/3xx (101: a WebSocket accepted) in the component tests: "
                              f"{unsuccessful}")
