-- Read a chunk of requests whole for the archive (ledger.archiving), in one reply.
-- ARGV[1]: JSON {prefix, family ('req' or 'cust'), ids, children (bool: also read each
--   request's children hash, for customer-level parents)}
-- Returns one JSON object: id -> {h = HGETALL (flat), l = LRANGE of its history,
--   c = HGETALL of its children (flat; only with children)}. A missing request has h = {}.
local p = cjson.decode(ARGV[1])
local out = {}
for _, id in ipairs(p.ids) do
  local key = p.prefix .. p.family .. ':' .. id
  local entry = {h = redis.call('HGETALL', key), l = redis.call('LRANGE', key .. ':hist', 0, -1)}
  if p.children then entry.c = redis.call('HGETALL', key .. ':children') end
  out[id] = entry
end
return cjson.encode(out)
