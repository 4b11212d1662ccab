"""Saved dashboards: named, per-tenant lists of widgets, each a stored query."""
