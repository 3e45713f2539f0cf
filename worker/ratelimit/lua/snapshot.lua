--! include limiter
-- The shared state as all workers see it (RateLimiter.snapshot); changes nothing but pruning
-- dead waiters. Returns {factor, in flight, urgent waiting, bulk waiting, grants, waits, wait_us,
-- rate_limited, pause JSON or nil}.
local adaptive, leases, urgent_queue, bulk_queue = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local waiter_expiry, stats, pause_flag = KEYS[5], KEYS[6], KEYS[7]
local recovery = tonumber(ARGV[1])
local now = server_now()
prune_waiters(now, urgent_queue, bulk_queue, waiter_expiry)
local counts = redis.call('HMGET', stats, 'grants', 'waits', 'wait_us', 'rate_limited')
return {
  string.format('%.6f', rate_factor(now, adaptive, recovery)),
  redis.call('ZCOUNT', leases, '(' .. string.format('%.0f', now), '+inf'),
  redis.call('ZCARD', urgent_queue),
  redis.call('ZCARD', bulk_queue),
  tonumber(counts[1] or 0), tonumber(counts[2] or 0), tonumber(counts[3] or 0),
  tonumber(counts[4] or 0),
  redis.call('GET', pause_flag),
}
