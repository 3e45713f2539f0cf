"""Lua scripts of customer-level (parent) requests; each is one atomic step in Redis.

Key layout (``P`` is the key prefix), beside the ledger's own (see :mod:`ledger.scripts`):

- ``P cust:<cr_id>``             hash: the parent request (see ``CustomerRequest``), plus ``job_seq``
- ``P cust:<cr_id>:hist``        list: JSON audit records, oldest first
- ``P cust:<cr_id>:children``    hash: account id -> child request id (``dr_…``)
- ``P customer:<cus_id>:reqs``   sorted set: every parent id for the customer, by creation time
- ``P intake:<service>:<event>`` hash: the caller's event id (see :mod:`ledger.event_ids`)

Nothing expires.
"""

from __future__ import annotations

# KEYS: event key, cust, hist, customer reqs, arq job, queue
# ARGV: request_id, now, body hash, result, created record, job_id, job bytes, score, expire_ms,
#       then field/value pairs for the parent hash.
# Returns {1, result} created, {0, stored result} answered before, {-1} event id conflict.
CREATE_CUSTOMER = """
local h = redis.call('HGET', KEYS[1], 'h')
if h then
  if h ~= ARGV[3] then return {-1} end
  local r = redis.call('HGET', KEYS[1], 'r')
  if r then return {0, r} end
end
local fields = {}
for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('HSET', KEYS[2], 'job_id', ARGV[6], 'job_seq', 1)
redis.call('RPUSH', KEYS[3], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
redis.call('SET', KEYS[5], ARGV[7], 'PX', ARGV[9])
redis.call('ZADD', KEYS[6], ARGV[8], ARGV[6])
redis.call('HSET', KEYS[1], 'h', ARGV[3], 'r', ARGV[4], 'at', ARGV[2])
return {1, ARGV[4]}
"""

# KEYS: cust, hist, queue
# ARGV: request_id, expected status, expected job id, to, now, record, attempts delta,
#       enqueue ("1"/"0"), job bytes, score, expire_ms, job key prefix, then field/value pairs.
# Returns {1, job_id}, {0, actual status} on a stale expectation, {-1} if there is no such parent.
CUSTOMER_TRANSITION = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {-1} end
local job = redis.call('HGET', KEYS[1], 'job_id') or ''
if status ~= ARGV[2] or job ~= ARGV[3] then return {0, status} end
if #ARGV >= 13 then
  local fields = {}
  for i = 13, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
end
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'updated_at', ARGV[5])
if ARGV[7] ~= '0' then redis.call('HINCRBY', KEYS[1], 'attempts', ARGV[7]) end
if ARGV[8] == '1' then
  local seq = redis.call('HINCRBY', KEYS[1], 'job_seq', 1)
  job = ARGV[1] .. '.' .. seq
  redis.call('HSET', KEYS[1], 'job_id', job)
  redis.call('SET', ARGV[12] .. job, ARGV[9], 'PX', ARGV[11])
  redis.call('ZADD', KEYS[3], ARGV[10], job)
end
local record = string.gsub(ARGV[6], '"job_id":"__JOB__"', '"job_id":"' .. job .. '"', 1)
redis.call('RPUSH', KEYS[2], record)
return {1, job}
"""
