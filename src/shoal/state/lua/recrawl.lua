-- RECRAWL: join a recrawl run of a shared crawl, or (start) begin the next one: queue again
-- every URL the crawl knows ('P v'), a bounded step at a time, each URL once per run.
--
-- A new run is begun only when no work is left (pending 0, parked hosts' URLs aside) and
-- some URL was committed (a crawl not seeded yet is crawled, run 1). It is filled in steps
-- (meta rgen: its number; rscan: where the fill stands; rcut: only URLs fetched before it,
-- us, -1: all; rq: URLs queued; rmin: the earliest fetch time of those not due). rscan is
-- one of, in this order:
--   'd<cursor>'  (rcut set only) the visits scanned for one that is due, changing nothing:
--                with none, the fill ends here and the crawl is left as it was (robots.txt
--                policies kept, parked hosts still parked)
--   'h<cursor>'  the hosts: each host's robots.txt is asked again
--   'k<index>[ <host>]'  each parked host in turn (host: the one a step is in the middle
--                of): the URLs its queue still holds (run N's work, which the run takes
--                over: counted in rq) are noted by URL in 'P rpq', from index on, then the
--                host is asked again (no longer parked); its retries waiting on their
--                clock join its queue first
--   'v<cursor>'  the visits: each URL due and not queued yet is queued; one in 'P rpq' is
--                queued already and only marked as this run's
-- Every worker that joins while rscan is set takes steps too, until the last step ends the
-- fill: with URLs queued, meta gen becomes rgen; with none, nothing changed but robots.txt
-- being asked again. A URL's visit records the run that queued it (HSCAN may return an
-- entry twice).
--
-- args (built by recrawl() in shoal/state/_redis_lua.py):
--   [1] start   1: begin the next run if none is unfinished; 0: only join
--   [2] cut_us  start only: revisit only URLs last fetched before this (-1: all)
--   [3] count   how many keys one step looks at
-- Returns {'fill', gen} (call again), {'run', gen} (no fill: a run is going on or over),
-- {'unfinished', gen, work left} (start refused: the current run has work left),
-- {'started', gen, queued} or {'nothing', gen, rmin or -1} (the fill just ended).

-- The URL of a queue entry (the layout is in prelude.lua).
local function entry_url(entry)
  local _, _, _, size, rest = string.match(entry, '^(%d+) (%a) (%d+) (%d+) (.*)$')
  return string.sub(rest, 1, tonumber(size))
end

-- The fill's end: meta gen becomes rgen if it queued anything.
local function end_fill(rgen)
  local m = redis.call('HMGET', META, 'rq', 'rmin')
  redis.call('HDEL', META, 'rscan', 'rgen', 'rcut', 'rq', 'rmin')
  redis.call('DEL', P .. 'rpq')
  if tonumber(m[1]) > 0 then
    redis.call('HSET', META, 'gen', rgen)
    return {'started', rgen, m[1]}
  end
  return {'nothing', generation(), m[2]}
end

-- rmin lowered to fetched (a URL not due yet).
local function note_rmin(rmin)
  if not rmin then return end
  local was = tonumber(redis.call('HGET', META, 'rmin'))
  if was < 0 or rmin < was then redis.call('HSET', META, 'rmin', int(rmin)) end
end

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
    -- With a cut, nothing changes before a due URL is found (a run may have none).
    scan = 'h0'
    if tonumber(args[2]) >= 0 then scan = 'd0' end
    redis.call('HSET', META, 'rscan', scan, 'rgen', generation() + 1, 'rcut', args[2],
      'rq', 0, 'rmin', -1)
    redis.call('DEL', P .. 'rpq')
  end
  local phase, cursor = string.sub(scan, 1, 1), string.sub(scan, 2)
  local rgen = tonumber(redis.call('HGET', META, 'rgen'))
  local cut = tonumber(redis.call('HGET', META, 'rcut'))
  if phase == 'd' then
    local r = redis.call('HSCAN', P .. 'v', cursor, 'COUNT', count)
    local kv, rmin = r[2], nil
    for i = 2, #kv, 2 do
      local x = parse_visit(kv[i])
      local fetched = tonumber(x.fetched)
      if x.run < rgen then
        if fetched < 0 or fetched < cut then
          redis.call('HSET', META, 'rscan', 'h0', 'rmin', -1)
          return {'fill', generation()}
        end
        if rmin == nil or fetched < rmin then rmin = fetched end
      end
    end
    note_rmin(rmin)
    if r[1] == '0' then return end_fill(rgen) end
    redis.call('HSET', META, 'rscan', 'd' .. r[1])
    return {'fill', generation()}
  end
  if phase == 'h' then
    -- Each host's robots.txt is asked again (parked hosts are asked again in phase k).
    local r = redis.call('SSCAN', P .. 'hosts', cursor, 'COUNT', count)
    if CFG.robots then
      for _, host in ipairs(r[2]) do
        redis.call('HDEL', P .. 'h:' .. host, 'pol', 'rtxt', 'cdelay', 'rattempt')
      end
    end
    scan = 'h' .. r[1]
    if r[1] == '0' then
      scan = 'k0'
      -- A parked host's retries waiting on their clock join its queue: the run asks the
      -- host again now, and phase k sees every URL of run N's it holds.
      if redis.call('SCARD', P .. 'parked') > 0 then
        for _, member in ipairs(redis.call('ZRANGE', DELAYED, 0, -1)) do
          local host, entry = string.match(member, '^([^\n]*)\n(.*)$')
          if redis.call('SISMEMBER', P .. 'parked', host) == 1 then
            redis.call('ZREM', DELAYED, member)
            redis.call('LPUSH', P .. 'q:' .. host, entry)
            redis.call('HINCRBY', P .. 'h:' .. host, 'dl', -1)
          end
        end
      end
    end
    redis.call('HSET', META, 'rscan', scan)
    return {'fill', generation()}
  end
  if phase == 'k' then
    -- While parked, nobody leases from the host: its queue holds still under the index.
    -- The host a step is in the middle of is named in rscan ('k<index> <host>').
    local at, host = string.match(cursor, '^(%d+) (.*)$')
    at = tonumber(at)
    if not host then
      at, host = 0, redis.call('SRANDMEMBER', P .. 'parked')
      if not host then
        redis.call('HSET', META, 'rscan', 'v0')
        return {'fill', generation()}
      end
    end
    local entries = redis.call('LRANGE', P .. 'q:' .. host, at, at + count - 1)
    local urls = {}
    for i, entry in ipairs(entries) do urls[i] = entry_url(entry) end
    if #urls > 0 then
      call_chunked('SADD', P .. 'rpq', urls, 400)
      redis.call('HINCRBY', META, 'rq', #urls)
    end
    if #entries < count then
      redis.call('SREM', P .. 'parked', host)
      redis.call('HSET', P .. 'h:' .. host, 'next', 0)
      schedule(host)
      poke()
      scan = 'k0'
    else
      scan = 'k' .. int(at + count) .. ' ' .. host
    end
    redis.call('HSET', META, 'rscan', scan)
    return {'fill', generation()}
  end
  local r = redis.call('HSCAN', P .. 'v', cursor, 'COUNT', count)
  local kv = r[2]
  local held = redis.call('EXISTS', P .. 'rpq') == 1
  local queued, rmin, touched, writes = 0, nil, {}, {}
  for i = 1, #kv, 2 do
    local x = parse_visit(kv[i + 1])
    if x.run < rgen then
      local fetched = tonumber(x.fetched)
      if cut < 0 or fetched < 0 or fetched < cut then
        local url = entry_url(x.entry)
        -- One in rpq is queued already (a parked host's, counted in rq by phase k).
        if not held or redis.call('SISMEMBER', P .. 'rpq', url) == 0 then
          local host = string.match(url, '^([^/]*//[^/]*)')
          redis.call('RPUSH', P .. 'q:' .. host, x.entry)
          touched[host] = true
          queued = queued + 1
        end
        x.run = rgen
        writes[#writes + 1] = kv[i]
        writes[#writes + 1] = pack_visit(x)
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
  note_rmin(rmin)
  if r[1] ~= '0' then
    redis.call('HSET', META, 'rscan', 'v' .. r[1])
    return {'fill', generation()}
  end
  return end_fill(rgen)
end)
