-- Token bucket of one API key (serving/rate_limit.py), atomic because Redis runs a script alone.
-- KEYS[1]: the bucket; ARGV[1]: refill rate in tokens per second; ARGV[2]: burst (bucket size);
-- ARGV[3]: tokens this request costs (1 for most; a dashboard costs one per widget), at most the burst.
-- Time is Redis's own clock, so every API replica refills the same bucket at the same pace.
-- Returns {allowed (1|0), milliseconds until a token is available (0 when allowed), tokens left as text}.
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = math.min(burst, tonumber(ARGV[3] or '1'))
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
    tokens = burst
    at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local allowed = 0
local wait_ms = 0
if tokens >= cost then
    tokens = tokens - cost
    allowed = 1
else
    wait_ms = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
-- a bucket left alone refills completely in burst / rate seconds; after that it need not be kept
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait_ms, tostring(tokens)}
