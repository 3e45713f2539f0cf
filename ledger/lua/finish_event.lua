-- Store the result answered for an event id (ledger.event_ids.EventRegistry.finish), unless one
-- is stored already; with a non-empty `replacing`, replace exactly that stored result.
-- KEYS: event key. ARGV: body hash, result, replacing ('' = store only if none).
-- Returns the stored result (ours or the earlier one), or false if a different body holds the
-- event id.
local event_key = KEYS[1]
local digest, result, replacing = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', event_key, 'h') ~= digest then return false end
local stored = redis.call('HGET', event_key, 'r')
if stored and (replacing == '' or stored ~= replacing) then return stored end
redis.call('HSET', event_key, 'r', result)
return result
