-- Daily rollups of one UTC day from its warm hourly rollups (storage_tiers/cold_files.py).
-- `hourly` is the day's warm hourly rollups as an Arrow table registered by the caller; $day is the
-- day's first instant (TIMESTAMPTZ, UTC). Unique users stay exact and mergeable: the distinct,
-- sorted union of the hours' user id lists.
SELECT
    tenant, event, country, device, page,
    $day AS "day",
    CAST(sum(events) AS BIGINT) AS events,
    sum(revenue) AS revenue,
    list_sort(list_distinct(flatten(list(user_ids)))) AS user_ids
FROM hourly
GROUP BY tenant, event, country, device, page
ORDER BY tenant, event, country, device, page
