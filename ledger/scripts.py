"""The ledger's Lua scripts: each one is a single atomic step in Redis.

Key layout (``P`` is the key prefix, ``fcd:`` by default):

- ``P req:<id>``            hash: the request (see ``DisconnectRequest``) without the fields reads
  restore (``request_id`` is in the key, ``updated_at`` is ``created_at`` until the first change,
  defaults are absent), plus ``job_seq`` (per-request jobs so far; absent means 0) and, until the
  request's second record, ``created_by``/``created_ts`` (see ``ledger.records``)
- ``P req:<id>:hist``       list: compact JSON audit records, oldest first; it does not exist
  until the request's second record (:data:`MATERIALISE` writes the first one into it then)
- ``P acct:<fca>:active``   string: id of the account's one active request, if any
- ``P acct:<fca>:reqs``     sorted set: the account's finished requests, by creation time (written
  by the terminal transition; the active request is found through ``active``)
- ``P acct:<fca>:hist``     list: JSON audit records about the account itself (no request)
- ``P status:<status>``     sorted set: request ids in that status, by time of the last change
- ``arq:job:<job id>``, the queue sorted set: arq's own records, written exactly as arq would. A
  job is either one request's (``<request id>.<job_seq>``, payload ``{"v":1,"request_id":…}``) or
  a bulk submission's batch (``b_<hex>``, payload ``{"v":1,"request_ids":[…]}``, the requests
  recorded with that job id)

Scripts build the history key of a merged request and the arq key of a promoted request's job
from prefixes passed as arguments (single-node Redis only).
"""

from __future__ import annotations

#: Shared prelude: give a request its history list, holding its creation record, if it has none.
#: Every script that appends to ``req:<id>:hist`` calls it first (and before changing ``job_id``,
#: which the creation record names). Must match ``ledger.records.creation_record``.
MATERIALISE = """
local function materialise(req_key, hist_key)
  local f = redis.call('HMGET', req_key, 'job_id', 'created_by', 'created_ts')
  if not f[3] then return end
  -- Always at the head: a list written by an older version (without this step) is repaired.
  redis.call('LPUSH', hist_key, '{"event":"disconnect.status_changed","to":"queued","attempt":0,'
    .. '"job_id":' .. cjson.encode(f[1]) .. ',"worker":' .. cjson.encode(f[2] or '')
    .. ',"ts":' .. cjson.encode(f[3]) .. '}')
  redis.call('HDEL', req_key, 'created_by', 'created_ts')
end
"""

# Records one or more new requests under one arq job and writes that job, or merges each into its
# account's active request.
# KEYS: status_queued, arq_job, queue, bulk_queue, then per request: active, req
# ARGV: now, job_id, job_bytes (ids as "__IDS__"), score_ms, expire_ms, prefix, arq_job_prefix,
#       promote_job (a disconnect job for "__EXISTING__", or '' if this submission is not urgent),
#       promote_message, bulk_source, then per request: request_id, the request hash's
#       field/value pairs as one JSON array, merge_record ("__EXISTING__" for the request id)
# Returns per request {1, id, ''} (created) or {0, existing_id, promoted_job_or_''} (merged).
# An urgent submission merged into a waiting bulk request promotes it: priority urgent, a fresh
# job on the urgent queue (due when its bulk job was), the old job left to be skipped as stale.
CREATE = (
    MATERIALISE
    + """
local function promote(existing, ekey)
  local f = redis.call('HMGET', ekey, 'status', 'priority', 'source', 'job_id')
  if f[1] ~= 'queued' and f[1] ~= 'retry_scheduled' and f[1] ~= 'in_progress' then return '' end
  local priority = f[2] or (f[3] == ARGV[10] and 'bulk' or 'urgent')
  if priority ~= 'bulk' then return '' end
  if f[1] == 'in_progress' then
    -- Its attempt is under way: whatever it enqueues next goes to the urgent queue.
    redis.call('HSET', ekey, 'priority', 'urgent')
    return '+'
  end
  local due = tonumber(ARGV[4])
  local old = f[4] and redis.call('ZSCORE', KEYS[4], f[4])
  if old and tonumber(old) > due then due = tonumber(old) end
  local job = existing .. '.' .. redis.call('HINCRBY', ekey, 'job_seq', 1)
  redis.call('HSET', ekey, 'priority', 'urgent', 'job_id', job)
  local bytes = string.gsub(ARGV[8], '__EXISTING__', existing, 1)
  redis.call('SET', ARGV[7] .. job, bytes, 'PX', ARGV[5] + due - ARGV[4])
  redis.call('ZADD', KEYS[3], due, job)
  return job
end

local function merge(existing, record)
  local ekey = ARGV[6] .. 'req:' .. existing
  materialise(ekey, ekey .. ':hist')
  local promoted = ''
  if ARGV[8] ~= '' then promoted = promote(existing, ekey) end
  record = string.gsub(record, '__EXISTING__', existing, 1)
  if promoted == '+' then
    record = string.sub(record, 1, -2) .. ',"message":' .. cjson.encode(ARGV[9]) .. '}'
  elseif promoted ~= '' then
    record = string.sub(record, 1, -2) .. ',"job_id":"' .. promoted .. '","message":'
      .. cjson.encode(ARGV[9]) .. '}'
  end
  redis.call('RPUSH', ekey .. ':hist', record)
  return {0, existing, promoted}
end

local answers, created, existings = {}, {}, {}
-- Read every account's active key first: an error here aborts before anything is written.
for i = 1, (#ARGV - 10) / 3 do
  existings[i] = redis.call('GET', KEYS[4 + 2 * (i - 1) + 1])
end
for i = 1, (#ARGV - 10) / 3 do
  local a, k = 10 + 3 * (i - 1), 4 + 2 * (i - 1)
  local existing = existings[i]
  if existing then
    answers[i] = merge(existing, ARGV[a + 3])
  else
    redis.call('SET', KEYS[k + 1], ARGV[a + 1])
    redis.call('HSET', KEYS[k + 2], 'job_id', ARGV[2], unpack(cjson.decode(ARGV[a + 2])))
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[a + 1])
    created[#created + 1] = ARGV[a + 1]
    answers[i] = {1, ARGV[a + 1], ''}
  end
end
if #created > 0 then
  local ids = '"' .. table.concat(created, '","') .. '"'
  local bytes = string.gsub(ARGV[3], '"__IDS__"', ids, 1)
  redis.call('SET', KEYS[2], bytes, 'PX', ARGV[5])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
end
return answers
"""
)

# KEYS: req, hist, status_from, status_to, active, queue, account_requests, urgent_queue
# (an enqueue goes to urgent_queue instead of queue if the request was promoted meanwhile)
# ARGV: request_id, expected_status, expected_job_id, to, now, record, terminal, attempts_delta,
#       enqueue ("1"/"0"), job_bytes, score, expire_ms, job_prefix, then field/value pairs
# Returns {1, job_id} on success, {0, actual_status, actual_job} on a stale expectation,
# {-1} if the request does not exist, {-2, holder} if re-activating collides with another request.
# A terminal move indexes the request under its account (by creation time).
TRANSITION = (
    MATERIALISE
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {-1} end
local job = redis.call('HGET', KEYS[1], 'job_id') or ''
if status ~= ARGV[2] then return {0, status, job} end
if ARGV[3] ~= '' and job ~= ARGV[3] then return {0, status, job} end
local holder = redis.call('GET', KEYS[5])
if ARGV[7] == '1' then
  if holder == ARGV[1] then redis.call('DEL', KEYS[5]) end
  redis.call('ZADD', KEYS[7], redis.call('HGET', KEYS[1], 'created_at'), ARGV[1])
elseif holder ~= ARGV[1] then
  if holder then return {-2, holder} end
  redis.call('SET', KEYS[5], ARGV[1])
end
materialise(KEYS[1], KEYS[2])
if #ARGV >= 14 then
  local fields = {}
  for i = 14, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
end
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'updated_at', ARGV[5])
if ARGV[8] ~= '0' then redis.call('HINCRBY', KEYS[1], 'attempts', ARGV[8]) end
if ARGV[9] == '1' then
  local seq = redis.call('HINCRBY', KEYS[1], 'job_seq', 1)
  job = ARGV[1] .. '.' .. seq
  redis.call('HSET', KEYS[1], 'job_id', job)
  redis.call('SET', ARGV[13] .. job, ARGV[10], 'PX', ARGV[12])
  local queue = KEYS[6]
  if redis.call('HGET', KEYS[1], 'priority') == 'urgent' then queue = KEYS[8] end
  redis.call('ZADD', queue, ARGV[11], job)
end
local record = string.gsub(ARGV[6], '"job_id":"__JOB__"', '"job_id":"' .. job .. '"', 1)
redis.call('RPUSH', KEYS[2], record)
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
return {1, job}
"""
)

# A record that is not a status change. KEYS: req, hist. ARGV: record.
NOTE = (
    MATERIALISE
    + """
materialise(KEYS[1], KEYS[2])
return redis.call('RPUSH', KEYS[2], ARGV[1])
"""
)
