-- Read a chunk of requests whole for the archive (ledger.archiving), in one reply.
-- ARGV[1]: JSON {reads: [{id, req (hash key), hist (history key), children (children hash
--   key; absent unless a customer-level parent)}]}
-- Returns one JSON object: id -> {h = HGETALL (flat), l = LRANGE of its history,
--   c = HGETALL of its children (flat; only with children)}. A missing request has h = {}.
local p = cjson.decode(ARGV[1])
local out = {}
for _, r in ipairs(p.reads) do
  local entry = {h = redis.call('HGETALL', r.req), l = redis.call('LRANGE', r.hist, 0, -1)}
  if r.children then entry.c = redis.call('HGETALL', r.children) end
  out[r.id] = entry
end
return cjson.encode(out)
