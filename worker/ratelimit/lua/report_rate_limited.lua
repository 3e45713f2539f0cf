--! include limiter
-- A Stripe rate-limit 429 was seen (RateLimiter.report_rate_limited): multiply the shared rate
-- factor by the decrease factor (floored), unless another worker did so within the cooldown.
-- Returns {1 if decreased else 0, the factor now as a string}.
local adaptive, stats = KEYS[1], KEYS[2]
local decrease, min_factor = tonumber(ARGV[1]), tonumber(ARGV[2])
local recovery, cooldown_us = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = server_now()
local factor = rate_factor(now, adaptive, recovery)
local last = redis.call('HGET', adaptive, 'at')
redis.call('HINCRBY', stats, 'rate_limited', 1)
if last and now - tonumber(last) < cooldown_us then
  return {0, string.format('%.6f', factor)}
end
factor = math.max(min_factor, factor * decrease)
redis.call('HSET', adaptive, 'factor', factor, 'at', now)
if recovery > 0 then
  redis.call('PEXPIRE', adaptive, math.ceil((1 - factor) / recovery / 1000) + 1000)
end
return {1, string.format('%.6f', factor)}
