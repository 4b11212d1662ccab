"""The exported GraphQL schema (docs/schema.graphql) is the one the API serves."""

from __future__ import annotations

from pathlib import Path

from serving.graphql_api.schema import SCHEMA

EXPORTED = Path(__file__).resolve().parents[2] / "docs" / "schema.graphql"


def test_the_exported_schema_is_current() -> None:
    assert EXPORTED.read_text() == SCHEMA.as_str() + "\n", (
        "docs/schema.graphql is out of date: python -m serving.graphql_api.schema > docs/schema.graphql")


def test_no_field_or_argument_takes_a_tenant() -> None:
    """The tenant comes from the API key only; a `tenant` argument would be a way around that."""
    sdl = SCHEMA.as_str()
    assert "tenant:" not in sdl.replace("  tenant: String!", "")
