"""Dagster's definitions load and validate (what `dagster definitions validate -w workspace.yaml` checks)."""

from __future__ import annotations

from dagster import Definitions


def test_definitions_object_is_valid() -> None:
    from orchestration.definitions import defs

    assert isinstance(defs, Definitions)
    Definitions.validate_loadable(defs)
    assert defs.get_repository_def() is not None
