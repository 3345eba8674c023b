-- wrk script: every request carries `x-user-id: user-N` with N uniform in 1..KEYSPACE, so the
-- proxies hash a fresh key each time and spread load over all backends.
-- KEYSPACE can be overridden with the environment variable of the same name.
local keyspace = tonumber(os.getenv("KEYSPACE") or "1000000")

function init(args)
   -- Each wrk thread has its own Lua state; seed them differently (the table address differs).
   math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1000003)
end

local headers = {}

function request()
   headers["x-user-id"] = "user-" .. math.random(1, keyspace)
   return wrk.format(nil, nil, headers)
end
