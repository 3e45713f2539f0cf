--! include materialise
-- A history record that is not a status change (ledger.machine.StateStore.note).
-- KEYS: req, hist. ARGV[1]: the record, JSON. Returns the history's length.
local req_key, hist_key = KEYS[1], KEYS[2]
materialise(req_key, hist_key)
return redis.call('RPUSH', hist_key, ARGV[1])
