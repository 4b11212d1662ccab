"""Dagster only: the batch layer's assets, checks, schedules, sensors and resources (see definitions.py).

Only the CLI imports it (``lakehouse dagster``); it calls ``batch``, ``storage_tiers`` and ``common``, never
``serving`` or the dev harness ``stack`` (the import-linter contracts in pyproject.toml check it).
"""
