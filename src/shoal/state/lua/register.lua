-- REGISTER: a new epoch for a worker; every lease of an older epoch comes back.
--
-- args (built by register() in shoal/state/_redis_lua.py):
--   [1] worker   the worker's id
-- Returns {epoch, committed offset, leases reclaimed}.
register('register', function(args)
  local worker = args[1]
  local wk = P .. 'w:' .. worker
  redis.call('SADD', P .. 'workers', worker)
  local epoch = redis.call('HINCRBY', wk, 'epoch', 1)
  -- Leases are few (workers x concurrency, plus pages awaiting their commit): read them all
  -- here, on the rare restart, rather than keep a set per worker on every lease.
  local back = 0
  local all = redis.call('HGETALL', LEASES)
  for i = 1, #all, 2 do
    if string.sub(all[i + 1], 1, #worker + 1) == worker .. '\n' then
      back = back + reclaim(all[i], all[i + 1])
    end
  end
  redis.call('HSET', wk, 'seen', now_ms())
  if back > 0 then poke() end
  return {epoch, redis.call('HGET', wk, 'offset') or '0', back}
end)
