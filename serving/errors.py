"""The one place where a domain error becomes an HTTP status.

Routes and services raise what went wrong in the domain's words (a query that cannot be answered, a hot
tier that is down, a dashboard changed by someone else); ``install_error_handlers`` turns each into its
status with the body ``{"error": message}``. A route never builds an error response itself, so the same
failure answers the same status on every endpoint. (FastAPI's own errors keep their ``{"detail": …}``
body: request validation, 422, and the ``HTTPException``s of the alert routes and of ``?format=``.)
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from common.hot_store import HotStoreError
from ingest.publisher import KafkaUnavailable
from serving.analytics.kpis import KpiExists, KpiNotFound
from serving.analytics.profiles import ProfileNotFound
from serving.dashboards.store import DashboardConflict, DashboardError, DashboardNotFound, VersionMismatch
from serving.query.engine import QueryTimeout
from serving.query.kpi import KpiError
from serving.query.spec import InvalidParameter, QueryError
from serving.reports.schedules import ScheduleError, ScheduleNotFound
from serving.services.analytics import AnalyticsEngineFailed
from serving.tenancy.auth import AuthError
from serving.tenancy.query_slots import TenantBusy
from serving.tenancy.tenants import DirectoryError

# The most specific class wins (VersionMismatch is a DashboardConflict): FastAPI looks errors up by their MRO.
STATUS: dict[type[Exception], int] = {
    QueryError: 400,  # the question cannot be answered as asked (unknown metric, bad range, filter...)
    InvalidParameter: 422,  # a parameter malformed in itself (tz that is no IANA zone)
    DashboardError: 400,  # a dashboard or If-Match that cannot be saved as sent
    DashboardNotFound: 404,
    DashboardConflict: 409,  # e.g. changing the built-in dashboard
    VersionMismatch: 412,  # If-Match names a version that is no longer current
    KpiError: 400,  # a KPI formula or name that cannot be accepted (the message points at the place)
    KpiNotFound: 404,
    KpiExists: 409,  # POST of a KPI name that is taken: PUT changes it
    ProfileNotFound: 404,  # (a profile that cannot be accepted is a QueryError: 400)
    ScheduleError: 400,  # a report schedule that cannot be saved as sent
    ScheduleNotFound: 404,
    HotStoreError: 503,  # the hot tier (or the hot node) does not answer: retry shortly
    AnalyticsEngineFailed: 503,  # the engine answering a funnel, retention, paths or sessions question failed
    KafkaUnavailable: 503,  # POST /events accepted nothing: send the batch again
    QueryTimeout: 504,  # the query ran past the configured timeout; the message says what to narrow
}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message}, headers=headers)


async def _mapped(_request: Request, exc: Exception) -> JSONResponse:
    status = next(STATUS[cls] for cls in type(exc).__mro__ if cls in STATUS)
    return error_response(status, str(exc))


async def _directory(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DirectoryError)
    return error_response(exc.status, str(exc))  # 400, or 404/409 as the directory decided


async def _auth(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    return error_response(exc.status, exc.message, exc.headers)  # 400, 401, 403, 429, 503


async def _tenant_busy(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TenantBusy)
    return error_response(429, str(exc), {"Retry-After": str(exc.retry_after)})


def install_error_handlers(app: FastAPI) -> None:
    for error in STATUS:
        app.add_exception_handler(error, _mapped)
    app.add_exception_handler(TenantBusy, _tenant_busy)
    app.add_exception_handler(DirectoryError, _directory)
    app.add_exception_handler(AuthError, _auth)
