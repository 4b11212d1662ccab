"""DuckDB sessions that reach the lake where it is: a local folder, or S3/MinIO through ``httpfs``.

Every DuckDB user (the archive, the purge, the lake views, the API's lake reader) opens its session
here, so they all run in UTC, never download an extension and reach S3 with the same secret.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import duckdb

from common.lake import fs_path, is_s3
from common.settings import Settings


def sql_literal(text: str) -> str:
    """A SQL string literal; only where DuckDB takes no parameter (LOAD, CREATE SECRET, SET, views)."""
    return "'" + text.replace("'", "''") + "'"


def httpfs_extension_path() -> Path:
    """The httpfs extension that the ``duckdb-extension-httpfs`` wheel ships for this DuckDB version.

    Loaded by path so nothing is ever downloaded at run time (``INSTALL httpfs`` would fetch it).
    """
    import duckdb_extension_httpfs

    path = Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{duckdb.__version__}" / (
        "httpfs.duckdb_extension")
    if not path.is_file():
        raise RuntimeError(
            f"DuckDB's httpfs extension for duckdb {duckdb.__version__} is missing ({path}); install the "
            f"matching wheel: pip install 'duckdb-extension-httpfs=={duckdb.__version__}'"
        )
    return path


def delta_extension_path() -> Path:
    """DuckDB's delta extension (``delta_scan``) from the ``duckdb-extension-delta`` wheel for this DuckDB version,
    loaded by path like httpfs, so nothing is downloaded at run time."""
    import duckdb_extension_delta

    path = Path(duckdb_extension_delta.__file__).parent / "extensions" / f"v{duckdb.__version__}" / (
        "delta.duckdb_extension")
    if not path.is_file():
        raise RuntimeError(
            f"DuckDB's delta extension for duckdb {duckdb.__version__} is missing ({path}); install the "
            f"matching wheel: pip install 'duckdb-extension-delta=={duckdb.__version__}'"
        )
    return path


def load_delta(con: duckdb.DuckDBPyConnection) -> None:
    """Make ``delta_scan('<table>')`` available on ``con`` (it reads S3 with the session's S3 secret)."""
    con.execute(f"LOAD {sql_literal(str(delta_extension_path()))}")


def configure_s3(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Load httpfs from its wheel and add an S3 secret from ``LAKEHOUSE_S3_*`` (path-style for MinIO).

    Without an access key DuckDB's default S3 settings apply (environment credentials on AWS).
    """
    con.execute(f"LOAD {sql_literal(str(httpfs_extension_path()))}")
    options = ["TYPE s3", f"REGION {sql_literal(settings.s3_region)}"]
    if settings.s3_access_key:
        options += [f"KEY_ID {sql_literal(settings.s3_access_key)}", f"SECRET {sql_literal(settings.s3_secret_key)}"]
    endpoint = settings.s3_endpoint.strip()
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"LAKEHOUSE_S3_ENDPOINT {endpoint!r} must look like http(s)://host:port")
        options += [f"ENDPOINT {sql_literal(parts.netloc)}", "URL_STYLE 'path'",
                    f"USE_SSL {'true' if parts.scheme == 'https' else 'false'}"]
    con.execute(f"CREATE OR REPLACE SECRET lakehouse_s3 ({', '.join(options)})")


def lake_session(settings: Settings, temp_dir: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB session in UTC that reaches the lake (S3 through httpfs), without views.

    Extension auto-install is off, so a query never triggers a download; ``temp_dir`` is where large
    sorts and aggregations spill.
    """
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    try:
        con.execute("SET TimeZone = 'UTC'")
        if temp_dir is not None:
            con.execute(f"SET temp_directory = {sql_literal(temp_dir)}")
        if is_s3(settings.effective_lake_uri):
            configure_s3(con, settings)
    except BaseException:
        con.close()
        raise
    return con


def duckdb_uri(uri: str) -> str:
    """DuckDB reads ``s3://`` through httpfs and local files by plain path (not ``file://``)."""
    return "s3://" + fs_path(uri) if is_s3(uri) else fs_path(uri)
