-- The tier movers (storage_tiers/movers.py, Dagster asset hot_tier_drop) own the hot tier's retention:
-- an hour leaves the hot tier only after the lake is verified to hold its rows, and then with
-- ALTER TABLE … DROP PARTITION. The unconditional TTLs of 001, 002 and 004 would drop hours whether
-- or not the archive and the batch recompute had caught up, so they are removed here. The horizons
-- (7 days, 7 days, 90 days by default) now live in the tier policy (storage_tiers/tiers.yaml).
ALTER TABLE events_raw REMOVE TTL;
ALTER TABLE rollups_1m REMOVE TTL;
ALTER TABLE rollups_1h REMOVE TTL;
