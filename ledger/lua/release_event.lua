-- Drop a claim of a caller's event id that was never answered (ledger.event_ids.
-- EventRegistry.release): only if it still holds this body hash and no result.
-- KEYS: event key. ARGV: body hash. Returns 1 if dropped, else 0.
local event_key = KEYS[1]
if redis.call('HGET', event_key, 'h') ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', event_key, 'r') == 1 then return 0 end
redis.call('DEL', event_key)
return 1
