"""The ledger's Lua scripts: each one is a single atomic step in Redis.

Key layout (``P`` is the key prefix, ``fcd:`` by default):

- ``P req:<id>``            hash: the request (see ``DisconnectRequest``), plus ``job_seq``
- ``P req:<id>:hist``       list: JSON audit records, oldest first
- ``P acct:<fca>:active``   string: id of the account's one active request, if any
- ``P acct:<fca>:reqs``     sorted set: every request id for the account, by creation time
- ``P acct:<fca>:hist``     list: JSON audit records about the account itself (no request)
- ``P status:<status>``     sorted set: request ids in that status, by time of the last change
- ``arq:job:<job id>``, the queue sorted set: arq's own records, written exactly as arq would

Scripts build the history key of a merged request from the prefix (single-node Redis only).
"""

from __future__ import annotations

# KEYS: active, req, hist, acct_reqs, status_queued, arq_job, queue
# ARGV: request_id, now, created_record, merge_record, job_id, job_bytes, score, expire_ms,
#       prefix, the request hash's field/value pairs as one JSON array (one argument instead of
#       ~20: packing arguments is most of a bulk submission's client-side cost)
CREATE = """
local existing = redis.call('GET', KEYS[1])
if existing then
  local merged = string.gsub(ARGV[4], '__EXISTING__', existing, 1)
  redis.call('RPUSH', ARGV[9] .. 'req:' .. existing .. ':hist', merged)
  return {0, existing}
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], unpack(cjson.decode(ARGV[10])))
redis.call('HSET', KEYS[2], 'job_id', ARGV[5], 'job_seq', 1)
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
redis.call('SET', KEYS[6], ARGV[6], 'PX', ARGV[8])
redis.call('ZADD', KEYS[7], ARGV[7], ARGV[5])
return {1, ARGV[1]}
"""

# KEYS: req, hist, status_from, status_to, active, queue
# ARGV: request_id, expected_status, expected_job_id, to, now, record, terminal, attempts_delta,
#       enqueue ("1"/"0"), job_bytes, score, expire_ms, job_prefix, then field/value pairs
# Returns {1, job_id} on success, {0, actual_status, actual_job} on a stale expectation,
# {-1} if the request does not exist, {-2, holder} if re-activating collides with another request.
TRANSITION = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {-1} end
local job = redis.call('HGET', KEYS[1], 'job_id') or ''
if status ~= ARGV[2] then return {0, status, job} end
if ARGV[3] ~= '' and job ~= ARGV[3] then return {0, status, job} end
local holder = redis.call('GET', KEYS[5])
if ARGV[7] == '1' then
  if holder == ARGV[1] then redis.call('DEL', KEYS[5]) end
elseif holder ~= ARGV[1] then
  if holder then return {-2, holder} end
  redis.call('SET', KEYS[5], ARGV[1])
end
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
  redis.call('ZADD', KEYS[6], ARGV[11], job)
end
local record = string.gsub(ARGV[6], '"job_id":"__JOB__"', '"job_id":"' .. job .. '"', 1)
redis.call('RPUSH', KEYS[2], record)
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
return {1, job}
"""
