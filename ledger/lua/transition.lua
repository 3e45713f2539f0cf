--! include materialise
--! include enqueue
-- One status change of one request of any kind (ledger.machine.StateStore.transition), all or
-- nothing: compare-and-set on status, job and claim token; write the fields; move the request
-- between status indexes; optionally enqueue its next job; append the one history record.
--
-- KEYS: req, hist, from_index, to_index, queue, urgent_queue[, active, account_requests]
--   (the last two only for kinds with one active request per account)
-- ARGV[1]: JSON {id, expect_status, expect_job ('' = any), expect_claim ('' = any), to,
--   now (string), terminal (bool), record (object; its job_id is set here when enqueuing),
--   attempts_delta, set (field -> string), unset (fields to delete),
--   enqueue (absent, or {job, job_prefix, score, expire_ms})}
-- Returns {1, job_id}; {0, status, job_id} when the request is not as the caller saw it; {-1} if
-- it does not exist; {-2, holder} if re-activating it collides with the account's other active
-- request. A terminal move indexes the request under its account (by creation time).
local req_key, hist_key, from_index, to_index = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local queue, urgent_queue, active_key, account_requests = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local p = cjson.decode(ARGV[1])

local current = redis.call('HMGET', req_key, 'status', 'job_id', 'claim')
local status, job, claim = current[1], current[2] or '', current[3] or ''
if not status then return {-1} end
if status ~= p.expect_status
  or (p.expect_job ~= '' and job ~= p.expect_job)
  or (p.expect_claim ~= '' and claim ~= p.expect_claim) then
  return {0, status, job}
end
if active_key then
  local holder = redis.call('GET', active_key)
  if p.terminal then
    if holder == p.id then redis.call('DEL', active_key) end
    redis.call('ZADD', account_requests, redis.call('HGET', req_key, 'created_at'), p.id)
  elseif holder ~= p.id then
    if holder then return {-2, holder} end
    redis.call('SET', active_key, p.id)
  end
end
materialise(req_key, hist_key)
for field, value in pairs(p.set) do redis.call('HSET', req_key, field, value) end
for _, field in ipairs(p.unset) do redis.call('HDEL', req_key, field) end
redis.call('HSET', req_key, 'status', p.to, 'updated_at', p.now)
if p.attempts_delta ~= 0 then redis.call('HINCRBY', req_key, 'attempts', p.attempts_delta) end
if p.enqueue then
  local target = queue
  if redis.call('HGET', req_key, 'priority') == 'urgent' then target = urgent_queue end
  job = enqueue_job(req_key, p.id, target, p.enqueue)
  p.record.job_id = job
end
redis.call('RPUSH', hist_key, cjson.encode(p.record))
redis.call('ZREM', from_index, p.id)
redis.call('ZADD', to_index, p.now, p.id)
return {1, job}
