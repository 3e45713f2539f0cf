-- Write fields of a request only while it is still held as the caller saw it (status and claim
-- token): a worker records its intent to post this way, and a worker that lost its claim cannot.
-- KEYS: req. ARGV[1]: JSON {expect_status, expect_claim ('' = any), set (field -> string)}.
-- Returns 1 if written, 0 if the request moved on.
local req_key = KEYS[1]
local p = cjson.decode(ARGV[1])
local current = redis.call('HMGET', req_key, 'status', 'claim')
if current[1] ~= p.expect_status then return 0 end
if p.expect_claim ~= '' and (current[2] or '') ~= p.expect_claim then return 0 end
for field, value in pairs(p.set) do redis.call('HSET', req_key, field, value) end
return 1
