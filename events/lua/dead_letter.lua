-- Park an inbox entry that failed too often (events.inbox.WebhookInbox): append it to the
-- dead-letter stream, capped at about ``maxlen`` entries (approximate ``MAXLEN ~``: the oldest
-- dead letters go first, and how many is added to the trimmed-entries counter and returned),
-- then acknowledge and delete it in the inbox, all in one step (a crash never doubles it).
-- KEYS: dead stream, inbox stream, trimmed counter (hash). ARGV: group, entry id, event JSON,
-- deliveries, maxlen, counter field. Returns the number of dead letters trimmed.
local dead, stream, trimmed_key = KEYS[1], KEYS[2], KEYS[3]
local group, entry_id, event, deliveries = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local maxlen, field = ARGV[5], ARGV[6]
local before = redis.call('XLEN', dead)
redis.call('XADD', dead, 'MAXLEN', '~', maxlen, '*', 'event', event, 'deliveries', deliveries)
local trimmed = before + 1 - redis.call('XLEN', dead)
redis.call('XACK', stream, group, entry_id)
redis.call('XDEL', stream, entry_id)
if trimmed > 0 then redis.call('HINCRBY', trimmed_key, field, trimmed) end
return trimmed
