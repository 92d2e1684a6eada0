-- args: version, identity, per_host, delay_ms, robots (1/0), bucket target.
-- Creates the crawl's meta hash unless it exists; returns what is stored.
register_init('init', function(args)
  if redis.call('EXISTS', META) == 0 then
    redis.call('HSET', META, 'version', args[1], 'identity', args[2], 'per_host', args[3],
      'delay', args[4], 'robots', args[5], 'st', args[6], 'sl', 0, 'ss', 0, 'sn', 0,
      'pending', 0, 'done', 0, 'failed', 0, 'lseq', 0, 'created', now_ms())
    return {'created'}
  end
  local m = redis.call('HMGET', META, 'version', 'identity', 'per_host', 'delay', 'robots')
  return {'exists', m[1] or '', m[2] or '', m[3] or '', m[4] or '', m[5] or ''}
end)
