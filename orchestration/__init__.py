"""Dagster only: the batch layer's assets, checks, schedules, sensors and resources (see definitions.py).

Nothing outside this package imports it; it calls ``batch``, ``common`` and ``stack``.
"""
