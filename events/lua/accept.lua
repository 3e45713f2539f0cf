-- Keep a verified Stripe event for processing, once (events.inbox.WebhookInbox.accept): mark its
-- id seen and append it to the inbox stream in one step.
-- KEYS: seen key, stream. ARGV: ttl seconds, event JSON. Returns 1 if new, 0 if seen before.
local seen_key, stream = KEYS[1], KEYS[2]
local ttl_seconds, event = ARGV[1], ARGV[2]
if redis.call('SET', seen_key, '1', 'NX', 'EX', ttl_seconds) then
  redis.call('XADD', stream, '*', 'event', event)
  return 1
end
return 0
