-- Delete the inbox group's consumers that own nothing and have been idle at least ``min_idle_ms``
-- (events.inbox.WebhookInbox.prune_consumers): a stopped process whose entries were handed back
-- or claimed away. A consumer that still owns entries stays until a live consumer claims them
-- (XAUTOCLAIM), so no pending entry is ever dropped; checked and deleted in one step.
-- KEYS: stream. ARGV: group, min idle ms. Returns the names deleted.
local stream = KEYS[1]
local group, min_idle = ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', stream) == 0 then return {} end
local consumers = redis.pcall('XINFO', 'CONSUMERS', stream, group)
if consumers.err then return {} end  -- no group yet
local deleted = {}
for _, info in ipairs(consumers) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  if tonumber(fields['pending']) == 0 and tonumber(fields['idle']) >= min_idle then
    redis.call('XGROUP', 'DELCONSUMER', stream, group, fields['name'])
    deleted[#deleted + 1] = fields['name']
  end
end
return deleted
