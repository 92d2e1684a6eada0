-- INIT: create the crawl's meta hash unless it exists (the only function that runs on a
-- crawl without keys).
--
-- args (built by init() in shoal/state/_redis_lua.py, from these names):
--   [1] version        the key layout's version
--   [2] identity       what the crawl is (JSON): workers of another crawl are refused
--   [3] per_host       jobs in flight per host at most
--   [4] delay_ms       the crawl's delay between request starts on one host
--   [5] robots         1: obey robots.txt, 0: not
--   [6] bucket_target  seen-set bucket size to split at (see maybe_split)
--   [7] n              how many host patterns follow
--   [8 ...] paces      n triples (pattern, per_host, delay_ms), -1 for the crawl's value:
--                      a host's own politeness, given to it when it is first seen
-- Returns {'created'}, or {'exists', version, identity, per_host, delay, robots} as stored.
register_init('init', function(args)
  if redis.call('EXISTS', META) == 0 then
    redis.call('HSET', META, 'version', args[1], 'identity', args[2], 'per_host', args[3],
      'delay', args[4], 'robots', args[5], 'st', args[6], 'sl', 0, 'ss', 0, 'sn', 0,
      'pending', 0, 'done', 0, 'failed', 0, 'lseq', 0, 'created', now_ms())
    local n = tonumber(args[7] or '0')
    if n > 0 then
      for i = 0, n - 1 do
        local at = 8 + i * 3
        redis.call('HSET', P .. 'paces', args[at], args[at + 1] .. ' ' .. args[at + 2])
      end
      redis.call('HSET', META, 'hp', '1')
    end
    return {'created'}
  end
  local m = redis.call('HMGET', META, 'version', 'identity', 'per_host', 'delay', 'robots')
  return {'exists', m[1] or '', m[2] or '', m[3] or '', m[4] or '', m[5] or ''}
end)
