-- Record a customer-level request and enqueue its listing job, together with the caller's event
-- id, in one step (ledger.customers.CustomerLedger.create).
-- KEYS: event_key, cust, hist, customer_reqs, arq_job, queue, status_index (of 'queued')
-- ARGV[1]: JSON {id, now (string), digest, result (string), record (object), job_id, job (the
--   arq record), score, expire_ms, fields (field -> string)}
-- Returns {1, result} created, {0, stored result} answered before, {-1} event id conflict.
local event_key, cust_key, hist_key, customer_reqs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local arq_job, queue, status_index = KEYS[5], KEYS[6], KEYS[7]
local p = cjson.decode(ARGV[1])
local digest = redis.call('HGET', event_key, 'h')
if digest then
  if digest ~= p.digest then return {-1} end
  local stored = redis.call('HGET', event_key, 'r')
  if stored then return {0, stored} end
end
for field, value in pairs(p.fields) do redis.call('HSET', cust_key, field, value) end
redis.call('HSET', cust_key, 'job_id', p.job_id, 'job_seq', 1)
redis.call('RPUSH', hist_key, cjson.encode(p.record))
redis.call('ZADD', customer_reqs, p.now, p.id)
redis.call('ZADD', status_index, p.now, p.id)
redis.call('SET', arq_job, cjson.encode(p.job), 'PX', p.expire_ms)
redis.call('ZADD', queue, p.score, p.job_id)
redis.call('HSET', event_key, 'h', p.digest, 'r', p.result, 'at', p.now)
return {1, p.result}
