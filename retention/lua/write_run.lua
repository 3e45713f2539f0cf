-- Write a sweep run's fields, and optionally its audit record, unless the run is terminal
-- (retention.runs.SweepRuns): once refused, finished, failed or cancelled, a record no longer
-- changes, so an operator's cancel cannot be overwritten by the sweep still running.
-- KEYS: run hash, its history, the active-runs index, its heartbeat
-- ARGV[1]: JSON {set (field -> string), record (absent, or the audit record as a JSON string),
--   finished (bool: the run leaves the active index and its heartbeat is dropped)}
-- Returns 1 if written, 0 if the run was terminal already.
local run_key, hist_key, active_key, heartbeat_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local p = cjson.decode(ARGV[1])
local status = redis.call('HGET', run_key, 'status')
if status == 'refused' or status == 'finished' or status == 'failed' or status == 'cancelled' then
  return 0
end
for field, value in pairs(p.set) do redis.call('HSET', run_key, field, value) end
if p.record then redis.call('RPUSH', hist_key, p.record) end
if p.finished then
  redis.call('ZREM', active_key, string.match(run_key, '[^:]+$'))
  redis.call('DEL', heartbeat_key)
end
return 1
