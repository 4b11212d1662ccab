-- The answer cache's store after a computation (serving/cache.py, QueryCache._compute_and_store), in one step: a
-- restatement's invalidation (INCR of the tenant's epoch, then the drop of the overlapping entries) can fall before
-- it or after it, never between the epoch check and the store.
-- KEYS: 1 the entry, 2 the tenant's index of ranges, 3 the tenant's epoch, 4 the computation lock ('' = none held).
-- ARGV: 1 the entry's value, 2 its time to live (ms), 3 '1' when it has a tenant's range (index and epoch),
--       4 the epoch read before the computation ('' = none yet), 5 the index member, 6 its score (when it expires),
--       7 now (older members leave the index), 8 the index's own time to live (s).
-- Returns 1 when stored, 0 when discarded (the epoch moved: the answer may predate a restatement).
local stored = 0
local ranged = ARGV[3] == '1'
if not ranged or (redis.call('GET', KEYS[3]) or '') == ARGV[4] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  if ranged then
    redis.call('ZADD', KEYS[2], ARGV[6], ARGV[5])
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[7])
    redis.call('EXPIRE', KEYS[2], ARGV[8])
  end
  stored = 1
end
if KEYS[4] ~= '' then
  redis.call('DEL', KEYS[4])
end
return stored
