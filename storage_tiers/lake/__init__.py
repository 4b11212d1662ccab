"""DuckDB over the lake: the views of every tier (events, hourly and daily rollups) and the API's rollup reader."""
