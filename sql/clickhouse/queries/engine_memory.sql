-- The embedded engine's memory by part, in bytes: what the hot node holds besides the process's own heap.
-- MemoryTracking is every allocation chDB tracks (queries, merges, caches); the caches are bounded by the
-- server settings of the same names (mark_cache_size …); the parts' primary keys grow with the data kept;
-- jemalloc's figures are chDB's allocator (allocated: live objects, resident: pages it holds).
SELECT metric AS part, toFloat64(value) AS bytes
FROM system.metrics
WHERE metric IN ('MemoryTracking', 'MarkCacheBytes', 'IndexMarkCacheBytes', 'PrimaryIndexCacheBytes',
                 'QueryConditionCacheBytes', 'UncompressedCacheBytes', 'QueryCacheBytes', 'PageCacheBytes')
UNION ALL
SELECT 'PrimaryKeysInMemory', toFloat64(sum(primary_key_bytes_in_memory_allocated)) FROM system.parts WHERE active
UNION ALL
SELECT 'ActiveParts', toFloat64(count()) FROM system.parts WHERE active
UNION ALL
SELECT 'OutdatedParts', toFloat64(count()) FROM system.parts WHERE NOT active
UNION ALL
SELECT tupleElement(figure, 1), tupleElement(figure, 2) FROM system.jemalloc_stats
ARRAY JOIN [('JemallocAllocated', toFloat64OrZero(extract(stats, 'Allocated: (\\d+)'))),
            ('JemallocResident', toFloat64OrZero(extract(stats, 'resident: (\\d+)')))] AS figure
