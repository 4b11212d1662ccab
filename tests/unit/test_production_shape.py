"""The production shape, checked by parsing (no Docker, no services).

``docker-compose.yml`` must configure the project's containers only with real settings, the settings
table of ``docs/operations.md`` must list exactly the fields of ``Settings``, and ``workspace.yaml`` must point Dagster
at a file that exists.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.settings_doc import END_MARKER, SETTINGS_DOC, START_MARKER, env_name, settings_table
from common.settings import REPO_ROOT, Settings

COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
WORKSPACE = REPO_ROOT / "workspace.yaml"

INFRA_SERVICES = {"kafka", "clickhouse", "minio", "redis"}
PROJECT_SERVICES = {"api", "stream", "dagster-webserver", "dagster-daemon"}
SETTING_VARS = {env_name(name) for name in Settings.model_fields}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _lakehouse_vars(env: dict[str, Any]) -> set[str]:
    return {name for name in env if name.startswith("LAKEHOUSE_")}


def test_compose_has_the_production_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    missing = (INFRA_SERVICES | PROJECT_SERVICES) - set(services)
    assert not missing, f"docker-compose.yml lacks services {sorted(missing)}"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert "minio/minio:" in services["minio"]["image"]
    assert any("minio/mc:" in str(s.get("image", "")) for s in services.values()), "no one-shot bucket creation"
    assert services["redis"]["image"].startswith("redis:")


def test_project_services_run_the_project_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    images = {services[name]["image"] for name in PROJECT_SERVICES}
    assert len(images) == 1, f"api, stream and Dagster should share one image, got {images}"
    commands = {name: services[name]["command"] for name in PROJECT_SERVICES}
    assert commands["api"] == ["lakehouse", "serve"]
    assert commands["stream"] == ["lakehouse", "stream"]
    assert commands["dagster-webserver"][:3] == ["dagster-webserver", "-w", "workspace.yaml"]
    assert commands["dagster-daemon"] == ["dagster-daemon", "run", "-w", "workspace.yaml"]
    for name in PROJECT_SERVICES:
        assert services[name].get("healthcheck"), f"{name} has no healthcheck"
        assert services[name].get("depends_on"), f"{name} has no depends_on"
    for name in ("dagster-webserver", "dagster-daemon"):
        env = _environment(services[name])
        assert env.get("DAGSTER_HOME"), f"{name} sets no DAGSTER_HOME"
        assert any(str(v).endswith(":" + env["DAGSTER_HOME"]) for v in services[name].get("volumes", [])), (
            f"{name}: DAGSTER_HOME is not on a volume"
        )


def test_every_lakehouse_variable_is_a_setting(compose: dict[str, Any]) -> None:
    found: dict[str, set[str]] = {}
    for key, block in compose.items():
        if key.startswith("x-") and isinstance(block, dict):
            found[key] = _lakehouse_vars(block)
    for name, service in compose["services"].items():
        found[name] = _lakehouse_vars(_environment(service))
    unknown = {where: sorted(names - SETTING_VARS) for where, names in found.items() if names - SETTING_VARS}
    assert not unknown, f"LAKEHOUSE_* variables that are not fields of Settings: {unknown}"
    assert found.get("x-lakehouse-env"), "docker-compose.yml has no x-lakehouse-env block"


def test_dockerfile_lakehouse_variables_are_settings() -> None:
    names = set(re.findall(r"\b(LAKEHOUSE_[A-Z0-9_]+)=", DOCKERFILE.read_text()))
    assert names <= SETTING_VARS, f"Dockerfile sets unknown settings {sorted(names - SETTING_VARS)}"


def test_project_services_use_a_clickhouse_server(compose: dict[str, Any]) -> None:
    for name in PROJECT_SERVICES:
        env = _environment(compose["services"][name])
        for var in ("LAKEHOUSE_KAFKA_MANAGE", "LAKEHOUSE_MINIO_MANAGE", "LAKEHOUSE_REDIS_MANAGE"):
            assert env.get(var) == "false", f"{name}: {var} must be false (the services run in their own containers)"
        dsn = env.get("LAKEHOUSE_CLICKHOUSE_DSN", "")
        assert dsn.startswith(("http://", "https://")), f"{name}: LAKEHOUSE_CLICKHOUSE_DSN is not an http DSN: {dsn!r}"
        assert "@clickhouse:8123/" in dsn
        assert env.get("LAKEHOUSE_HOT_STORE_MODE") == "direct"
        assert env.get("LAKEHOUSE_LAKE_URI", "").startswith("s3://")


def test_credentials_are_interpolated_not_hard_coded(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for var, value in _environment(service).items():
            if re.search(r"PASSWORD|SECRET|ACCESS_KEY|ROOT_USER", var):
                assert value.startswith("${"), f"{name}: {var} should come from ${{VAR:-local default}}"
        dsn = _environment(service).get("LAKEHOUSE_CLICKHOUSE_DSN")
        if dsn:
            assert "${CLICKHOUSE_PASSWORD:-" in dsn, f"{name}: the ClickHouse password in the DSN is hard-coded"


def _doc_table_block() -> str:
    text = SETTINGS_DOC.read_text()
    assert START_MARKER in text and END_MARKER in text, f"{SETTINGS_DOC} lacks the {START_MARKER} … {END_MARKER} lines"
    return text.split(START_MARKER, 1)[1].split(END_MARKER, 1)[0]


def test_settings_table_lists_exactly_the_settings() -> None:
    rows = re.findall(r"^\|\s*`([^`]+)`\s*\|", _doc_table_block(), flags=re.MULTILINE)
    assert len(rows) == len(set(rows)), "the settings table lists a variable twice"
    listed = set(rows)
    assert listed == SETTING_VARS, (
        f"the settings table of docs/operations.md is out of date: missing {sorted(SETTING_VARS - listed)}, "
        f"extra {sorted(listed - SETTING_VARS)}; regenerate it with `python -m cli.settings_doc --update`"
    )


def test_settings_table_is_the_generated_one() -> None:
    assert _doc_table_block().strip() == settings_table().strip(), (
        "the settings table of docs/operations.md differs from Settings (a default or description changed); "
        "regenerate it with `python -m cli.settings_doc --update`"
    )


def test_settings_table_shows_defaults_independent_of_the_machine() -> None:
    table = settings_table()
    assert "| `LAKEHOUSE_HOME` | `<repo>/.lakehouse` |" in table
    assert "| `LAKEHOUSE_CACHE_DIR` | `~/.cache/lakehouse` |" in table
    assert str(REPO_ROOT) not in table and str(Path.home()) + "/" not in table


def test_workspace_points_at_an_existing_definitions_file() -> None:
    workspace = yaml.safe_load(WORKSPACE.read_text())
    targets = [entry["python_file"] for entry in workspace["load_from"] if "python_file" in entry]
    assert targets, "workspace.yaml loads no python_file"
    for target in targets:
        path = target["relative_path"] if isinstance(target, dict) else target
        working_dir = target.get("working_directory", ".") if isinstance(target, dict) else "."
        assert (WORKSPACE.parent / path).is_file(), f"workspace.yaml points at missing {path}"
        assert (WORKSPACE.parent / working_dir).is_dir()


def test_the_api_refuses_the_local_admin_key_beyond_loopback() -> None:
    from serving.start_checks import LOCAL_ADMIN_KEY, unsafe_start_reason

    assert LOCAL_ADMIN_KEY == "local-admin-key"
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert unsafe_start_reason(Settings(api_host=host)) is None, host
    for host in ("0.0.0.0", "::", "10.0.0.5", "api.internal", "192.168.1.10"):
        reason = unsafe_start_reason(Settings(api_host=host))
        assert reason is not None and "LAKEHOUSE_ADMIN_KEY" in reason and host in reason, host
        assert unsafe_start_reason(Settings(api_host=host, admin_key="a-real-secret-of-the-operator")) is None


def test_compose_requires_an_admin_key_and_keeps_dagster_on_loopback() -> None:
    text = COMPOSE.read_text()
    assert "LAKEHOUSE_ADMIN_KEY: ${LAKEHOUSE_ADMIN_KEY:?" in text and "local-admin-key" not in text
    assert '"${DAGSTER_BIND:-127.0.0.1}:${DAGSTER_PORT:-3000}:3000"' in text
