-- Write an arq job for a request exactly as arq's enqueue_job would (the JSON record under
-- arq:job:<id> with an expiry, and the job in the queue's sorted set, scored by its due time in
-- ms), under the request's next job id <request id>.<job_seq>. Returns the new job id.
-- spec: {job (the arq record as an object), job_prefix, score, expire_ms}
local function enqueue_job(req_key, request_id, queue, spec)
  local seq = redis.call('HINCRBY', req_key, 'job_seq', 1)
  local job = request_id .. '.' .. seq
  redis.call('HSET', req_key, 'job_id', job)
  redis.call('SET', spec.job_prefix .. job, cjson.encode(spec.job), 'PX', spec.expire_ms)
  redis.call('ZADD', queue, spec.score, job)
  return job
end
