-- Remove archived requests from Redis (ledger.archiving), each unit (a request, or a customer
-- parent with its children) only if every request in it is still exactly as archived: same
-- status, same updated_at, same history length. Else the unit stays (the next pass archives it
-- again; the archive's upsert replaces the row). Removes every key and index entry of the unit.
-- ARGV[1]: JSON {units: [{reqs: [{id, req (hash key), hist (history key), status, updated
--   ('' if absent), hlen, index (its status index key), owner (its account's or customer's
--   index key)}], events (event-id keys), children (a children hash key or '')}]}
-- Returns one JSON array: the ids removed.
local p = cjson.decode(ARGV[1])
local removed = {}
local function unchanged(r)
  local f = redis.call('HMGET', r.req, 'status', 'updated_at')
  return f[1] == r.status and (f[2] or '') == r.updated and redis.call('LLEN', r.hist) == r.hlen
end
for _, unit in ipairs(p.units) do
  local ok = true
  for _, r in ipairs(unit.reqs) do
    if not unchanged(r) then ok = false break end
  end
  if ok then
    for _, r in ipairs(unit.reqs) do
      redis.call('DEL', r.req, r.hist)
      redis.call('ZREM', r.index, r.id)
      redis.call('ZREM', r.owner, r.id)
      removed[#removed + 1] = r.id
    end
    for _, event_key in ipairs(unit.events) do redis.call('DEL', event_key) end
    if unit.children ~= '' then redis.call('DEL', unit.children) end
  end
end
if #removed == 0 then return '[]' end
return cjson.encode(removed)
