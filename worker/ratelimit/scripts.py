"""The limiter's Lua scripts: every decision is one atomic script run on the Redis server.

All times are Redis server time (``TIME``) in microseconds, so worker clock skew cannot bend the
budget. Numbers are passed to ``redis.call`` as Lua numbers (Redis formats them without losing
precision) and returned as integers (microseconds) or as formatted strings (the rate factor).

Key layout, under the limiter's prefix ``P`` (``fcd:rl:`` by default):

=====================  ======  =============================================================
``P tat:ep:<name>``    string  GCRA theoretical arrival time of the endpoint budget
``P tat:global``       string  GCRA theoretical arrival time of the global budget
``P leases``           zset    lease id -> expiry; a member is a call in flight (or about to be)
``P adaptive``         hash    ``factor`` set by the last decrease and ``at``, when it was made
``P wait:urgent``       zset    refused urgent caller id -> when it joined; non-empty: bulk waits
``P wait:bulk``         zset    refused bulk caller id -> when it joined
``P wait:expiry``       zset    refused caller id -> when to forget it (it died or gave up)
``P stats``            hash    ``grants``, ``waits``, ``wait_us``, ``rate_limited`` counters
``fcd:paused``         string  the kill switch (see :mod:`control.pause`)
=====================  ======  =============================================================
"""

from __future__ import annotations

from typing import Final

# Shared helpers. rate_factor: the value left by the last decrease plus additive recovery since.
# prune_waiters: forget queued callers whose marker expired (they died or gave up).
_PRELUDE_LUA: Final = """
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
local function prune_waiters(now, urgent_queue, bulk_queue, expiry)
  local dead = redis.call('ZRANGEBYSCORE', expiry, '-inf', now)
  for _, id in ipairs(dead) do
    redis.call('ZREM', urgent_queue, id)
    redis.call('ZREM', bulk_queue, id)
  end
  if #dead > 0 then redis.call('ZREMRANGEBYSCORE', expiry, '-inf', now) end
end
"""

# Status codes returned by ACQUIRE; mirrored by ``Outcome`` in the limiter module.
GRANTED: Final = 0
RATE_WAIT: Final = 1
BUSY_WAIT: Final = 2
YIELD_TO_URGENT: Final = 3
PAUSED: Final = 4

# KEYS: 1 endpoint TAT, 2 global TAT, 3 leases, 4 adaptive, 5 urgent queue, 6 bulk queue,
#       7 waiter expiry, 8 stats, 9 pause flag.
# ARGV: 1 endpoint interval us, 2 global interval us, 3 burst, 4 max in flight, 5 lease us,
#       6 caller id, 7 priority, 8 honour pause (1/0), 9 reserve-ahead us, 10 recovery per us,
#       11 busy retry us, 12 waiter grace us.
# Returns {status, microseconds}: for GRANTED the delay until the booked slot (and, third, the
# slot itself in Redis microseconds: what the limiter booked), otherwise how long to sleep before
# asking again. A refused caller joins its priority's queue (first come first
# ranked) and its sleep grows with the number of callers ranked ahead of it, so a crowd of waiters
# wakes one slot apart instead of all at once.
ACQUIRE: Final = (
    _PRELUDE_LUA
    + """
local now = server_now()
local id, urgent = ARGV[6], ARGV[7] == 'urgent'
local queue = urgent and KEYS[5] or KEYS[6]
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
prune_waiters(now, KEYS[5], KEYS[6], KEYS[7])
if ARGV[8] == '1' and redis.call('EXISTS', KEYS[9]) == 1 then return {4, 0} end

local factor = rate_factor(now, KEYS[4], tonumber(ARGV[10]))
local burst = tonumber(ARGV[3])
local t_ep, t_gl = tonumber(ARGV[1]) / factor, tonumber(ARGV[2]) / factor
local tat_ep = tonumber(redis.call('GET', KEYS[1]) or now)
local tat_gl = tonumber(redis.call('GET', KEYS[2]) or now)
local slot = math.max(now, tat_ep - (burst - 1) * t_ep, tat_gl - (burst - 1) * t_gl)
local delay = math.floor(slot - now)
local reserve_ahead = tonumber(ARGV[9])

local function wait(status, base_us)
  redis.call('ZADD', queue, 'NX', now, id)
  local ahead = redis.call('ZRANK', queue, id)
  if not urgent then ahead = ahead + redis.call('ZCARD', KEYS[5]) end
  local us = math.max(1000, math.floor(base_us + ahead * math.max(t_ep, t_gl)))
  local forget_at = now + us + tonumber(ARGV[12])
  local keep_ms = math.ceil((forget_at - now) / 1000) + 1000
  redis.call('ZADD', KEYS[7], forget_at, id)
  keep_at_least(queue, keep_ms)
  keep_at_least(KEYS[7], keep_ms)
  redis.call('HINCRBY', KEYS[8], 'waits', 1)
  redis.call('HINCRBY', KEYS[8], 'wait_us', us)
  return {status, us}
end

if not urgent and redis.call('ZCARD', KEYS[5]) > 0 then
  return wait(3, math.max(delay - reserve_ahead, 0))
end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return wait(2, tonumber(ARGV[11])) end
if delay > reserve_ahead then return wait(1, delay - reserve_ahead) end

local new_ep, new_gl = math.max(tat_ep, slot) + t_ep, math.max(tat_gl, slot) + t_gl
redis.call('SET', KEYS[1], new_ep, 'PX', math.ceil((new_ep - now) / 1000) + 1000)
redis.call('SET', KEYS[2], new_gl, 'PX', math.ceil((new_gl - now) / 1000) + 1000)
local lease_end = slot + tonumber(ARGV[5])
redis.call('ZADD', KEYS[3], lease_end, id)
keep_at_least(KEYS[3], math.ceil((lease_end - now) / 1000) + 1000)
redis.call('ZREM', queue, id)
redis.call('ZREM', KEYS[7], id)
redis.call('HINCRBY', KEYS[8], 'grants', 1)
if delay > 0 then
  redis.call('HINCRBY', KEYS[8], 'waits', 1)
  redis.call('HINCRBY', KEYS[8], 'wait_us', delay)
end
return {0, delay, math.floor(slot)}
"""
)

# KEYS: 1 adaptive, 2 stats. ARGV: 1 decrease factor, 2 min factor, 3 recovery per us,
# 4 cooldown us. Returns {1 if decreased else 0, factor now as a string}.
REPORT_RATE_LIMITED: Final = (
    _PRELUDE_LUA
    + """
local now = server_now()
local recovery = tonumber(ARGV[3])
local factor = rate_factor(now, KEYS[1], recovery)
local last = redis.call('HGET', KEYS[1], 'at')
redis.call('HINCRBY', KEYS[2], 'rate_limited', 1)
if last and now - tonumber(last) < tonumber(ARGV[4]) then
  return {0, string.format('%.6f', factor)}
end
factor = math.max(tonumber(ARGV[2]), factor * tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'factor', factor, 'at', now)
if recovery > 0 then
  redis.call('PEXPIRE', KEYS[1], math.ceil((1 - factor) / recovery / 1000) + 1000)
end
return {1, string.format('%.6f', factor)}
"""
)

# KEYS: 1 adaptive, 2 leases, 3 urgent queue, 4 bulk queue, 5 waiter expiry, 6 stats, 7 pause.
# ARGV: 1 recovery per us. Changes nothing but pruning dead waiters. Returns {factor, in flight,
# urgent waiting, bulk waiting, grants, waits, wait_us, rate_limited, pause JSON or nil}.
SNAPSHOT: Final = (
    _PRELUDE_LUA
    + """
local now = server_now()
prune_waiters(now, KEYS[3], KEYS[4], KEYS[5])
local stats = redis.call('HMGET', KEYS[6], 'grants', 'waits', 'wait_us', 'rate_limited')
return {
  string.format('%.6f', rate_factor(now, KEYS[1], tonumber(ARGV[1]))),
  redis.call('ZCOUNT', KEYS[2], '(' .. string.format('%.0f', now), '+inf'),
  redis.call('ZCARD', KEYS[3]),
  redis.call('ZCARD', KEYS[4]),
  tonumber(stats[1] or 0), tonumber(stats[2] or 0), tonumber(stats[3] or 0),
  tonumber(stats[4] or 0),
  redis.call('GET', KEYS[7]),
}
"""
)

# KEYS: 1 lock key. ARGV: 1 token. Deletes the key only if it still holds our token.
COMPARE_AND_DELETE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
