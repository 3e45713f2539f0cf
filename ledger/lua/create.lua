--! include materialise
-- Record one or more new account requests under one arq job and write that job, or merge each
-- into its account's active request (ledger.submissions). All or nothing: every account's active
-- key is read before anything is written.
--
-- KEYS: status_queued, arq_job, queue, bulk_queue, then per request: active, req
-- ARGV[1]: JSON {now (string), job_id, job (the arq record; for a batch its payload's
--   request_ids is filled in here with the requests actually created), score, expire_ms,
--   prefix, job_prefix, promote_job (absent unless this submission is urgent: a disconnect job
--   record for the merged-into request, whose request_id is filled in here), promote_message,
--   bulk_source, children_key (absent, or a parent's children hash: account id -> request id),
--   requests: [{id, account_id, fields (field -> string), merge (the merge record)}]}
-- Returns per request {1, id, ''} (created) or {0, existing_id, promoted_job_or_'' or '+'}.
-- An urgent submission merged into a waiting bulk request promotes it: priority urgent, a fresh
-- job on the urgent queue (due when its bulk job was), the old job left to be skipped as stale;
-- merged into one in flight ('+'), it only makes the request's next enqueue urgent.
local status_queued, arq_job, queue, bulk_queue = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local p = cjson.decode(ARGV[1])

local function promote(existing, ekey)
  local f = redis.call('HMGET', ekey, 'status', 'priority', 'source', 'job_id')
  if f[1] ~= 'queued' and f[1] ~= 'retry_scheduled' and f[1] ~= 'in_progress' then return '' end
  local priority = f[2] or (f[3] == p.bulk_source and 'bulk' or 'urgent')
  if priority ~= 'bulk' then return '' end
  if f[1] == 'in_progress' then
    redis.call('HSET', ekey, 'priority', 'urgent')
    return '+'
  end
  local due = tonumber(p.score)
  local old = f[4] and redis.call('ZSCORE', bulk_queue, f[4])
  if old and tonumber(old) > due then due = tonumber(old) end
  local job = existing .. '.' .. redis.call('HINCRBY', ekey, 'job_seq', 1)
  redis.call('HSET', ekey, 'priority', 'urgent', 'job_id', job)
  p.promote_job.a[1].request_id = existing
  redis.call('SET', p.job_prefix .. job, cjson.encode(p.promote_job),
    'PX', tonumber(p.expire_ms) + due - tonumber(p.score))
  redis.call('ZADD', queue, due, job)
  return job
end

local function merge(existing, record)
  local ekey = p.prefix .. 'req:' .. existing
  materialise(ekey, ekey .. ':hist')
  local promoted = ''
  if p.promote_job then promoted = promote(existing, ekey) end
  record.request_id = existing
  if promoted == '+' then
    record.message = p.promote_message
  elseif promoted ~= '' then
    record.job_id = promoted
    record.message = p.promote_message
  end
  redis.call('RPUSH', ekey .. ':hist', cjson.encode(record))
  return {0, existing, promoted}
end

local answers, created, existings = {}, {}, {}
for i = 1, #p.requests do
  existings[i] = redis.call('GET', KEYS[4 + 2 * i - 1])
end
for i, request in ipairs(p.requests) do
  local active_key, req_key = KEYS[4 + 2 * i - 1], KEYS[4 + 2 * i]
  if existings[i] then
    answers[i] = merge(existings[i], request.merge)
  else
    redis.call('SET', active_key, request.id)
    redis.call('HSET', req_key, 'job_id', p.job_id)
    for field, value in pairs(request.fields) do redis.call('HSET', req_key, field, value) end
    redis.call('ZADD', status_queued, p.now, request.id)
    created[#created + 1] = request.id
    answers[i] = {1, request.id, ''}
  end
  if p.children_key then redis.call('HSET', p.children_key, request.account_id, answers[i][2]) end
end
if #created > 0 then
  if p.job.a[1].request_ids then p.job.a[1].request_ids = created end
  redis.call('SET', arq_job, cjson.encode(p.job), 'PX', p.expire_ms)
  redis.call('ZADD', queue, p.score, p.job_id)
end
return answers
