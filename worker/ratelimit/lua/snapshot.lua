--! include limiter
-- The shared state as all workers see it (RateLimiter.snapshot); changes nothing but pruning
-- dead waiters. KEYS: adaptive, leases, the four class queues (urgent protected, urgent read,
-- bulk protected, bulk read), waiter_expiry, stats, pause_flag. Returns {factor, in flight,
-- urgent waiting, bulk waiting, grants, waits, wait_us, rate_limited, pause JSON or nil}.
local adaptive, leases = KEYS[1], KEYS[2]
local queues = {KEYS[3], KEYS[4], KEYS[5], KEYS[6]}
local waiter_expiry, stats, pause_flag = KEYS[7], KEYS[8], KEYS[9]
local recovery = tonumber(ARGV[1])
local now = server_now()
prune_waiters(now, queues, waiter_expiry)
local counts = redis.call('HMGET', stats, 'grants', 'waits', 'wait_us', 'rate_limited')
return {
  string.format('%.6f', rate_factor(now, adaptive, recovery)),
  redis.call('ZCOUNT', leases, '(' .. string.format('%.0f', now), '+inf'),
  redis.call('ZCARD', queues[1]) + redis.call('ZCARD', queues[2]),
  redis.call('ZCARD', queues[3]) + redis.call('ZCARD', queues[4]),
  tonumber(counts[1] or 0), tonumber(counts[2] or 0), tonumber(counts[3] or 0),
  tonumber(counts[4] or 0),
  redis.call('GET', pause_flag),
}
