--! include limiter
-- One acquisition (worker.ratelimit.limiter.RateLimiter._decide): the kill switch, the endpoint
-- budget, the global budget and the in-flight cap, checked together; grant (advancing both GCRA
-- arrival times and adding a lease) or say how long to wait, spending nothing.
-- Returns {status, microseconds[, slot]}: status GRANTED (0) with the delay until the booked
-- slot and the slot itself (Redis microseconds: what the limiter booked), or
-- RATE_WAIT (1), BUSY_WAIT (2), YIELD (3), PAUSED (4) with how long to sleep before asking
-- again (worker.ratelimit.scripts).
--
-- Classes, in the order the global budget serves them (worker.ratelimit package docstring):
--   1 urgent calls to the protected endpoint (disconnect), 2 urgent calls to any other endpoint
--   (reads), 3 bulk protected calls and 4 bulk reads (3 and 4 take turns while both wait).
-- A caller yields while a class served before it has callers queued. A refused caller joins its
-- class's queue (first come first ranked) and sleeps longer the more callers are ranked ahead of
-- it, so a crowd of waiters wakes one slot apart instead of all at once.
-- No read ever delays an urgent protected call: a read never books a slot later than the
-- protected endpoint's next free slot, and an urgent protected call may take the global slot
-- one interval early, so a read granted just before it costs it nothing (GCRA burst + 1 for
-- that class on the global budget only).
--
-- KEYS: endpoint_tat, global_tat, leases, adaptive, the four class queues (in class order),
--   waiter_expiry, stats, pause_flag, protected_tat, bulk_turn
-- ARGV[1]: JSON {endpoint_interval, global_interval, protected_interval (0: no protected
--   endpoint), burst, max_in_flight, lease_us, id, urgent, protected, honour_pause,
--   reserve_ahead, recovery_per_us, busy_retry_us, waiter_grace_us}; intervals are microseconds
--   at full rate.
local endpoint_tat, global_tat, leases, adaptive = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local queues = {KEYS[5], KEYS[6], KEYS[7], KEYS[8]}
local waiter_expiry, stats, pause_flag = KEYS[9], KEYS[10], KEYS[11]
local protected_tat, bulk_turn = KEYS[12], KEYS[13]
local p = cjson.decode(ARGV[1])

local now = server_now()
local class = (p.urgent and 0 or 2) + (p.protected and 1 or 2)
local queue = queues[class]
local kind = p.protected and 'protected' or 'read'
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
prune_waiters(now, queues, waiter_expiry)
if p.honour_pause and redis.call('EXISTS', pause_flag) == 1 then return {4, 0} end

local factor = rate_factor(now, adaptive, p.recovery_per_us)
local t_ep, t_gl = p.endpoint_interval / factor, p.global_interval / factor
local tat_ep = tonumber(redis.call('GET', endpoint_tat) or now)
local tat_gl = tonumber(redis.call('GET', global_tat) or now)
local global_tolerance = (p.burst - 1) * t_gl
if class == 1 then global_tolerance = global_tolerance + t_gl end
local slot = math.max(now, tat_ep - (p.burst - 1) * t_ep, tat_gl - global_tolerance)
local delay = math.floor(slot - now)

-- How many grants this caller must let go first: every caller queued in a class served before
-- it, and for a bulk caller one more while the other bulk class waits and this one had the last
-- bulk grant (the classes take turns, so one grant of the other is all it waits for).
local function yielding_to()
  local ahead = 0
  for c = 1, math.min(class - 1, 2) do ahead = ahead + redis.call('ZCARD', queues[c]) end
  if class < 3 or ahead > 0 then return ahead end
  if redis.call('GET', bulk_turn) == kind and redis.call('ZCARD', queues[7 - class]) > 0 then
    return 1
  end
  return 0
end

local function wait(status, base_us, before)
  redis.call('ZADD', queue, 'NX', now, p.id)
  local ahead = redis.call('ZRANK', queue, p.id) + before
  local us = math.max(1000, math.floor(base_us + ahead * math.max(t_ep, t_gl)))
  local forget_at = now + us + p.waiter_grace_us
  local keep_ms = math.ceil((forget_at - now) / 1000) + 1000
  redis.call('ZADD', waiter_expiry, forget_at, p.id)
  keep_at_least(queue, keep_ms)
  keep_at_least(waiter_expiry, keep_ms)
  redis.call('HINCRBY', stats, 'waits', 1)
  redis.call('HINCRBY', stats, 'wait_us', us)
  return {status, us}
end

local before = yielding_to()
if before > 0 then return wait(3, math.max(delay - p.reserve_ahead, 0), before) end
if redis.call('ZCARD', leases) >= p.max_in_flight then return wait(2, p.busy_retry_us, 0) end
if not p.protected and p.protected_interval > 0 then
  local t_pr = p.protected_interval / factor
  local next_protected = tonumber(redis.call('GET', protected_tat) or now) - (p.burst - 1) * t_pr
  local free_until = math.max(now, next_protected)
  if slot > free_until then return wait(1, slot - free_until, 0) end
end
if delay > p.reserve_ahead then return wait(1, delay - p.reserve_ahead, 0) end

local new_ep, new_gl = math.max(tat_ep, slot) + t_ep, math.max(tat_gl, slot) + t_gl
redis.call('SET', endpoint_tat, new_ep, 'PX', math.ceil((new_ep - now) / 1000) + 1000)
redis.call('SET', global_tat, new_gl, 'PX', math.ceil((new_gl - now) / 1000) + 1000)
local lease_end = slot + p.lease_us
redis.call('ZADD', leases, lease_end, p.id)
keep_at_least(leases, math.ceil((lease_end - now) / 1000) + 1000)
redis.call('ZREM', queue, p.id)
redis.call('ZREM', waiter_expiry, p.id)
if class >= 3 then redis.call('SET', bulk_turn, kind, 'PX', 10000) end
redis.call('HINCRBY', stats, 'grants', 1)
if delay > 0 then
  redis.call('HINCRBY', stats, 'waits', 1)
  redis.call('HINCRBY', stats, 'wait_us', delay)
end
return {0, delay, math.floor(slot)}
