--! include limiter
-- One acquisition (worker.ratelimit.limiter.RateLimiter._decide): the kill switch, the endpoint
-- budget, the global budget and the in-flight cap, checked together; grant (advancing both GCRA
-- arrival times and adding a lease) or say how long to wait, spending nothing.
-- Returns {status, microseconds[, slot]}: status GRANTED (0) with the delay until the booked
-- slot and the slot itself (Redis microseconds: what the limiter booked), or
-- RATE_WAIT (1), BUSY_WAIT (2), YIELD_TO_URGENT (3), PAUSED (4) with how long to sleep before
-- asking again (worker.ratelimit.scripts). A refused caller joins its priority's queue (first come
-- first ranked) and its sleep grows with the number of callers ranked ahead of it, so a crowd of
-- waiters wakes one slot apart instead of all at once.
local endpoint_tat, global_tat, leases, adaptive = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local urgent_queue, bulk_queue, waiter_expiry = KEYS[5], KEYS[6], KEYS[7]
local stats, pause_flag = KEYS[8], KEYS[9]
local endpoint_interval, global_interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local burst, max_in_flight, lease_us = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local id, urgent, honour_pause = ARGV[6], ARGV[7] == 'urgent', ARGV[8] == '1'
local reserve_ahead, recovery_per_us = tonumber(ARGV[9]), tonumber(ARGV[10])
local busy_retry_us, waiter_grace_us = tonumber(ARGV[11]), tonumber(ARGV[12])

local now = server_now()
local queue = urgent and urgent_queue or bulk_queue
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
prune_waiters(now, urgent_queue, bulk_queue, waiter_expiry)
if honour_pause and redis.call('EXISTS', pause_flag) == 1 then return {4, 0} end

local factor = rate_factor(now, adaptive, recovery_per_us)
local t_ep, t_gl = endpoint_interval / factor, global_interval / factor
local tat_ep = tonumber(redis.call('GET', endpoint_tat) or now)
local tat_gl = tonumber(redis.call('GET', global_tat) or now)
local slot = math.max(now, tat_ep - (burst - 1) * t_ep, tat_gl - (burst - 1) * t_gl)
local delay = math.floor(slot - now)

local function wait(status, base_us)
  redis.call('ZADD', queue, 'NX', now, id)
  local ahead = redis.call('ZRANK', queue, id)
  if not urgent then ahead = ahead + redis.call('ZCARD', urgent_queue) end
  local us = math.max(1000, math.floor(base_us + ahead * math.max(t_ep, t_gl)))
  local forget_at = now + us + waiter_grace_us
  local keep_ms = math.ceil((forget_at - now) / 1000) + 1000
  redis.call('ZADD', waiter_expiry, forget_at, id)
  keep_at_least(queue, keep_ms)
  keep_at_least(waiter_expiry, keep_ms)
  redis.call('HINCRBY', stats, 'waits', 1)
  redis.call('HINCRBY', stats, 'wait_us', us)
  return {status, us}
end

if not urgent and redis.call('ZCARD', urgent_queue) > 0 then
  return wait(3, math.max(delay - reserve_ahead, 0))
end
if redis.call('ZCARD', leases) >= max_in_flight then return wait(2, busy_retry_us) end
if delay > reserve_ahead then return wait(1, delay - reserve_ahead) end

local new_ep, new_gl = math.max(tat_ep, slot) + t_ep, math.max(tat_gl, slot) + t_gl
redis.call('SET', endpoint_tat, new_ep, 'PX', math.ceil((new_ep - now) / 1000) + 1000)
redis.call('SET', global_tat, new_gl, 'PX', math.ceil((new_gl - now) / 1000) + 1000)
local lease_end = slot + lease_us
redis.call('ZADD', leases, lease_end, id)
keep_at_least(leases, math.ceil((lease_end - now) / 1000) + 1000)
redis.call('ZREM', queue, id)
redis.call('ZREM', waiter_expiry, id)
redis.call('HINCRBY', stats, 'grants', 1)
if delay > 0 then
  redis.call('HINCRBY', stats, 'waits', 1)
  redis.call('HINCRBY', stats, 'wait_us', delay)
end
return {0, delay, math.floor(slot)}
