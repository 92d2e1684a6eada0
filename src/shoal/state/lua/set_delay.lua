-- args: host, delay ms. The host's delay between request starts (auto-throttle).
register('set_delay', function(args)
  local host = args[1]
  if redis.call('SADD', P .. 'hosts', host) == 1 and not CFG.robots then
    redis.call('HSET', P .. 'h:' .. host, 'pol', 'none')
  end
  redis.call('HSET', P .. 'h:' .. host, 'delay', args[2])
  return 1
end)
