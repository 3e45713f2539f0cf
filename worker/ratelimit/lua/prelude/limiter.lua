-- Shared helpers of the limiter's scripts (all times are Redis server time, in microseconds).
-- rate_factor: the value left by the last decrease plus additive recovery since.
-- prune_waiters: forget queued callers whose marker expired (they died or gave up).
local function rate_factor(now, adaptive_key, recovery_per_us)
  local stored = redis.call('HMGET', adaptive_key, 'factor', 'at')
  if not stored[1] then return 1 end
  local recovered = tonumber(stored[1]) + recovery_per_us * (now - tonumber(stored[2]))
  return math.min(1, recovered)
end
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function keep_at_least(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
local function prune_waiters(now, queues, expiry)
  local dead = redis.call('ZRANGEBYSCORE', expiry, '-inf', now)
  for _, id in ipairs(dead) do
    for _, queue in ipairs(queues) do redis.call('ZREM', queue, id) end
  end
  if #dead > 0 then redis.call('ZREMRANGEBYSCORE', expiry, '-inf', now) end
end
