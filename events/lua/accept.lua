-- Keep a verified Stripe event for processing, once (events.inbox.WebhookInbox.accept): mark its
-- id seen and append it to the inbox stream in one step, the stream capped at about ``maxlen``
-- entries (approximate ``MAXLEN ~`` trimming drops the oldest, which are events not yet applied:
-- the count trimmed is added to the trimmed-entries counter and returned, so it is never silent).
-- KEYS: seen key, stream, trimmed counter (hash). ARGV: ttl seconds, event JSON, maxlen, counter
-- field. Returns {1 if new else 0, entries trimmed}.
local seen_key, stream, trimmed_key = KEYS[1], KEYS[2], KEYS[3]
local ttl_seconds, event, maxlen, field = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('SET', seen_key, '1', 'NX', 'EX', ttl_seconds) then
  local before = redis.call('XLEN', stream)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'event', event)
  local trimmed = before + 1 - redis.call('XLEN', stream)
  if trimmed > 0 then redis.call('HINCRBY', trimmed_key, field, trimmed) end
  return {1, trimmed}
end
return {0, 0}
