-- A consumer of the inbox group stops (events.inbox.WebhookInbox.leave): every entry it still
-- holds is handed to the parking consumer with its idle time set to the claim threshold, so the
-- next XAUTOCLAIM of any live consumer takes it at once (JUSTID: the delivery count is not
-- raised, a shutdown is not a failed delivery), and only then is the consumer deleted; nothing it
-- owned is dropped. KEYS: stream. ARGV: group, consumer, parking consumer, idle ms.
-- Returns the number of entries handed back.
local stream = KEYS[1]
local group, consumer, parking, idle_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local handed = 0
while true do
  local held = redis.call('XPENDING', stream, group, '-', '+', 100, consumer)
  if #held == 0 then break end
  -- (unpack must come last: in the middle of an argument list it yields one value)
  local args = {'XCLAIM', stream, group, parking, 0}
  for _, entry in ipairs(held) do args[#args + 1] = entry[1] end
  for _, option in ipairs({'IDLE', idle_ms, 'JUSTID'}) do args[#args + 1] = option end
  redis.call(unpack(args))
  handed = handed + #held
end
redis.call('XGROUP', 'DELCONSUMER', stream, group, consumer)
return handed
