-- RENEW: extend a worker's live leases (the heartbeat of long fetches).
--
-- args (built by renew() in shoal/state/_redis_lua.py):
--   [1]     worker      the worker's id
--   [2]     epoch       its epoch
--   [3]     ttl_ms      how long from now the leases last
--   [4 ...] lease_ids
-- Returns the ids that are no longer its own.
register('renew', function(args)
  local worker, epoch, ttl = args[1], args[2], tonumber(args[3])
  local now = now_ms()
  local lost = {}
  for i = 4, #args do
    local id = args[i]
    local rec = redis.call('HGET', LEASES, id)
    local ok = false
    if rec then
      local w, e = parse_lease(rec)
      ok = w == worker and e == epoch
    end
    if ok then redis.call('ZADD', EXPIRY, now + ttl, id) else lost[#lost + 1] = id end
  end
  if #lost < #args - 3 then due_by(now + ttl) end
  redis.call('HSET', P .. 'w:' .. worker, 'seen', now)
  return lost
end)
