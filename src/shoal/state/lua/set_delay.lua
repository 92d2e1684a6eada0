-- SET_DELAY: a host's delay between request starts, for every worker (auto-throttle).
--
-- args (built by set_delay() in shoal/state/_redis_lua.py):
--   [1] host       'scheme://host[:port]'
--   [2] delay_ms
-- Returns 1.
register('set_delay', function(args)
  local host = args[1]
  if redis.call('SADD', P .. 'hosts', host) == 1 then new_host(host) end
  redis.call('HSET', P .. 'h:' .. host, 'delay', args[2])
  return 1
end)
