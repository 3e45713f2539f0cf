-- Give a request its history list, holding its creation record, if it has none yet.
-- A pending request keeps its creation record as three hash fields (job_id, created_by,
-- created_ts; see ledger.records); every script that appends to req:<id>:hist calls this first,
-- and before it changes job_id, which the creation record names. The record built here must
-- equal ledger.records.creation_record. It always goes to the head: a list written by an older
-- version (without this step) is repaired.
local function materialise(req_key, hist_key)
  local f = redis.call('HMGET', req_key, 'job_id', 'created_by', 'created_ts')
  if not f[3] then return end
  local record = {event = 'disconnect.status_changed', to = 'queued', attempt = 0,
                  worker = f[2] or '', ts = f[3]}
  if f[1] then record.job_id = f[1] end
  redis.call('LPUSH', hist_key, cjson.encode(record))
  redis.call('HDEL', req_key, 'created_by', 'created_ts')
end
