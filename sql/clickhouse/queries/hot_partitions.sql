-- Inventory of one hot-tier table per partition (storage_tiers/compliance/inventory.py): physical rows and bytes of
-- the active parts from system.parts, event-time range from the time column. The time column is part of
-- the partition key, so min/max/count per partition are answered from the parts' minmax index (ClickHouse's
-- implicit minmax_count projection), not by scanning rows. The table and time placeholders are filled from a
-- whitelist in Python (identifiers cannot be query parameters over every hot-store implementation).
SELECT
    p.partition_id            AS partition_id,
    p.rows                    AS rows,
    p.bytes                   AS bytes,
    p.parts                   AS parts,
    t.min_time                AS min_time,
    t.max_time                AS max_time
FROM
(
    SELECT partition_id, sum(rows) AS rows, sum(bytes_on_disk) AS bytes, count() AS parts
    FROM system.parts
    WHERE database = currentDatabase() AND table = '{table}' AND active
    GROUP BY partition_id
) AS p
INNER JOIN
(
    SELECT _partition_id AS partition_id,
           toDateTime64(min({time}), 3, 'UTC') AS min_time,
           toDateTime64(max({time}), 3, 'UTC') AS max_time
    FROM {table}
    GROUP BY _partition_id
) AS t ON p.partition_id = t.partition_id
ORDER BY t.min_time
