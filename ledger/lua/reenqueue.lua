--! include materialise
--! include enqueue
-- Give a waiting request a fresh arq job, due now, without a status change (the reconciler;
-- ledger.machine.StateStore.reenqueue). With only_if_orphaned the check and the repair are one
-- step, so a job a worker is picking up at that moment is never doubled. A job is alive while its
-- record exists and it is queued or held by a worker (arq:in-progress:<id>); a batch job's arq
-- key alone may be a dead worker's (arq keeps it in the queue and holds it for a day), so a held
-- batch job is alive only with its heartbeat. A request's own job held by a worker although it was
-- due before held_stale_before_ms (>= 0) is a lost worker's: a live one claims at once.
-- KEYS: req, hist, queue
-- ARGV[1]: JSON {id, expect_status, expect_job, record, enqueue {job, job_prefix, score,
--   expire_ms}, in_progress_prefix, only_if_orphaned (bool), heartbeat_key ('' unless a batch),
--   held_stale_before_ms (-1: never)}
-- Returns {1, new_job} on success, {0, status, job} if the request moved or its job is alive.
local req_key, hist_key, queue = KEYS[1], KEYS[2], KEYS[3]
local p = cjson.decode(ARGV[1])
local current = redis.call('HMGET', req_key, 'status', 'job_id')
local status, job = current[1], current[2] or ''
if not status then return {0, '', ''} end
if status ~= p.expect_status or job ~= p.expect_job then return {0, status, job} end
if p.only_if_orphaned and job ~= '' and redis.call('EXISTS', p.enqueue.job_prefix .. job) == 1 then
  local held = redis.call('EXISTS', p.in_progress_prefix .. job) == 1
  local alive
  if p.heartbeat_key ~= '' then
    if held then
      alive = redis.call('EXISTS', p.heartbeat_key) == 1
    else
      alive = redis.call('ZSCORE', queue, job) ~= false
    end
  else
    local score = redis.call('ZSCORE', queue, job)
    alive = held or score ~= false
    if held and score and p.held_stale_before_ms >= 0 and tonumber(score) < p.held_stale_before_ms then
      alive = false
    end
  end
  if alive then return {0, status, job} end
end
materialise(req_key, hist_key)
local new_job = enqueue_job(req_key, p.id, queue, p.enqueue)
p.record.job_id = new_job
redis.call('RPUSH', hist_key, cjson.encode(p.record))
return {1, new_job}
