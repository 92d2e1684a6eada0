-- RECRAWL: join a recrawl run of a shared crawl, or (start) begin the next one: queue again
-- every URL the crawl knows ('P v'), a bounded step at a time, each URL once per run.
--
-- A new run is begun only when no work is left (pending 0, parked hosts' URLs aside) and
-- some URL was committed (a crawl not seeded yet is crawled, run 1). It is
-- filled in steps (meta rgen: its number, rscan: where the scan stands, 'h<cursor>' over
-- the hosts then 'v<cursor>' over the visits; rcut: only URLs fetched before it, us, -1:
-- all; rq: URLs queued; rmin: the earliest fetch time of those not due). Every worker that
-- joins while rscan is set takes steps too, until the last step ends the fill: with URLs
-- queued, meta gen becomes rgen; with none, nothing changed but robots.txt being asked again.
-- A URL's visit records the run that queued it (HSCAN may return an entry twice).
--
-- args (built by recrawl() in shoal/state/_redis_lua.py):
--   [1] start   1: begin the next run if none is unfinished; 0: only join
--   [2] cut_us  start only: revisit only URLs last fetched before this (-1: all)
--   [3] count   how many keys one step looks at
-- Returns {'fill', gen} (call again), {'run', gen} (no fill: a run is going on or over),
-- {'unfinished', gen, work left} (start refused: the current run has work left),
-- {'started', gen, queued} or {'nothing', gen, rmin or -1} (the fill just ended).
register('recrawl', function(args)
  local start, count = args[1] == '1', tonumber(args[3])
  local scan = redis.call('HGET', META, 'rscan')
  if not scan then
    if not start then return {'run', generation()} end
    local left = tonumber(redis.call('HGET', META, 'pending') or '0')
    for _, host in ipairs(redis.call('SMEMBERS', P .. 'parked')) do
      left = left - redis.call('LLEN', P .. 'q:' .. host)
        - num(redis.call('HGET', P .. 'h:' .. host, 'dl'), 0)
    end
    if left > 0 then return {'unfinished', generation(), left} end
    -- A crawl that has committed nothing yet is crawled, not recrawled.
    if redis.call('HLEN', P .. 'v') == 0 then return {'run', generation()} end
    scan = 'h0'
    redis.call('HSET', META, 'rscan', scan, 'rgen', generation() + 1, 'rcut', args[2],
      'rq', 0, 'rmin', -1)
  end
  local phase, cursor = string.sub(scan, 1, 1), string.sub(scan, 2)
  local rgen = tonumber(redis.call('HGET', META, 'rgen'))
  if phase == 'h' then
    -- Each host's robots.txt is asked again, and a parked host asked again.
    local r = redis.call('SSCAN', P .. 'hosts', cursor, 'COUNT', count)
    for _, host in ipairs(r[2]) do
      local hk = P .. 'h:' .. host
      if CFG.robots then redis.call('HDEL', hk, 'pol', 'rtxt', 'cdelay', 'rattempt') end
      if redis.call('SREM', P .. 'parked', host) == 1 then redis.call('HSET', hk, 'next', 0) end
    end
    cursor = r[1]
    if cursor == '0' then phase = 'v' end
    redis.call('HSET', META, 'rscan', phase .. cursor)
    return {'fill', generation()}
  end
  local cut = tonumber(redis.call('HGET', META, 'rcut'))
  local r = redis.call('HSCAN', P .. 'v', cursor, 'COUNT', count)
  local kv = r[2]
  local queued, rmin, touched, writes = 0, nil, {}, {}
  for i = 1, #kv, 2 do
    local x = parse_visit(kv[i + 1])
    if x.run < rgen then
      local fetched = tonumber(x.fetched)
      if cut < 0 or fetched < 0 or fetched < cut then
        local _, _, _, size, rest = string.match(x.entry, '^(%d+) (%a) (%d+) (%d+) (.*)$')
        local url = string.sub(rest, 1, tonumber(size))
        local host = string.match(url, '^([^/]*//[^/]*)')
        redis.call('RPUSH', P .. 'q:' .. host, x.entry)
        touched[host] = true
        x.run = rgen
        writes[#writes + 1] = kv[i]
        writes[#writes + 1] = pack_visit(x)
        queued = queued + 1
      elseif rmin == nil or fetched < rmin then
        rmin = fetched
      end
    end
  end
  if #writes > 0 then call_chunked('HSET', P .. 'v', writes, 400) end
  if queued > 0 then
    redis.call('HINCRBY', META, 'pending', queued)
    redis.call('HINCRBY', META, 'rq', queued)
    for host in pairs(touched) do schedule(host) end
    poke()
  end
  if rmin then
    local was = tonumber(redis.call('HGET', META, 'rmin'))
    if was < 0 or rmin < was then redis.call('HSET', META, 'rmin', int(rmin)) end
  end
  if r[1] ~= '0' then
    redis.call('HSET', META, 'rscan', 'v' .. r[1])
    return {'fill', generation()}
  end
  local m = redis.call('HMGET', META, 'rq', 'rmin')
  redis.call('HDEL', META, 'rscan', 'rgen', 'rcut', 'rq', 'rmin')
  if tonumber(m[1]) > 0 then
    redis.call('HSET', META, 'gen', rgen)
    return {'started', rgen, m[1]}
  end
  return {'nothing', generation(), m[2]}
end)
