-- Claim a caller's event id (ledger.event_ids.EventRegistry.claim).
-- KEYS: event key. ARGV: body hash, now.
-- Returns {1} new claim, {0} pending (same hash, no result), {2, result} answered before,
-- {-1} a different body holds the event id.
local event_key = KEYS[1]
local digest, now = ARGV[1], ARGV[2]
local stored = redis.call('HGET', event_key, 'h')
if not stored then
  redis.call('HSET', event_key, 'h', digest, 'at', now)
  return {1}
end
if stored ~= digest then return {-1} end
local result = redis.call('HGET', event_key, 'r')
if result then return {2, result} end
return {0}
