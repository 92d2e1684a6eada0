-- LASTMOD: a recrawl run's pages a sitemap says changed since their last fetch (#19), as
-- SqliteFrontier.revisit_first does for one process: each goes to the front of its host's
-- queue. One queued by this run already (its visit's run is this run) is moved there if it
-- is still in the queue (leased, fetched or waiting to retry: left alone); one this run did
-- not queue (--revisit-after found it not due) is queued there now, and its visit records
-- this run: once per run, whichever worker reads the sitemap and however often.
--
-- args (built by lastmod() in shoal/state/_redis_lua.py):
--   [1 ...]  changed   pairs (signed fingerprint, the page's <lastmod> in wall-clock us)
-- Returns how many pages were moved up or queued. Nothing in run 1 (not a recrawl) or
-- while the next run is being filled (this one is over).
--
-- Cost: one HMGET per 400 pages, and per host with a page to move, one pass over its queue
-- (LRANGE in slices, the found entries overwritten with a tombstone, then one LREM): linear
-- in the queue, however many of its pages move, in bounded memory.
local TOMBSTONE = '\0'  -- never an entry: they start with a digit
local SLICE = 1000

register('lastmod', function(args)
  local run = generation()
  if run < 2 or redis.call('HEXISTS', META, 'rscan') == 1 then return 0 end
  local fps, lms, seen = {}, {}, {}
  for i = 1, #args - 1, 2 do
    if not seen[args[i]] then  -- a sitemap may list a page twice
      seen[args[i]] = true
      fps[#fps + 1] = args[i]
      lms[#lms + 1] = tonumber(args[i + 1])
    end
  end
  local olds = {}
  for i = 1, #fps, 400 do
    local got = redis.call('HMGET', P .. 'v', unpack(fps, i, math.min(i + 399, #fps)))
    for j = 1, #got do olds[#olds + 1] = got[j] end
  end
  local front, move, hosts, writes, queued = {}, {}, {}, {}, 0
  for j = 1, #fps do
    local raw = olds[j]
    if raw then
      local x = parse_visit(raw)
      local fetched = tonumber(x.fetched)
      if fetched >= 0 and fetched < lms[j] and x.run <= run then
        local _, _, _, size, rest = string.match(x.entry, '^(%d+) (%a) (%d+) (%d+) (.*)$')
        local host = string.match(string.sub(rest, 1, tonumber(size)), '^([^/]*//[^/]*)')
        if not front[host] then
          front[host], move[host] = {}, {}
          hosts[#hosts + 1] = host
        end
        if x.run < run then
          table.insert(front[host], x.entry)
          x.run = run
          writes[#writes + 1] = fps[j]
          writes[#writes + 1] = pack_visit(x)
          queued = queued + 1
        else
          -- Matched without its attempt count (a reclaimed lease's entry has one more).
          move[host][string.match(x.entry, '^%d+(.*)$')] = true
          move[host].n = (move[host].n or 0) + 1
        end
      end
    end
  end
  local moved = queued
  for _, host in ipairs(hosts) do
    local q, want, found = P .. 'q:' .. host, move[host], {}
    local left = want.n or 0
    local at, len = 0, 0
    if left > 0 then len = redis.call('LLEN', q) end
    while left > 0 and at < len do
      local slice = redis.call('LRANGE', q, at, at + SLICE - 1)
      for k, e in ipairs(slice) do
        local key = string.match(e, '^%d+(.*)$')
        if want[key] then
          want[key] = nil
          found[#found + 1] = e
          redis.call('LSET', q, at + k - 1, TOMBSTONE)
          left = left - 1
          if left == 0 then break end
        end
      end
      at = at + SLICE
    end
    if #found > 0 then redis.call('LREM', q, #found, TOMBSTONE) end
    moved = moved + #found
    -- In the sitemap's order at the front: LPUSH puts each before the one pushed before.
    local fresh, all = #front[host], front[host]
    for _, e in ipairs(found) do all[#all + 1] = e end
    local reversed = {}
    for i = #all, 1, -1 do reversed[#reversed + 1] = all[i] end
    if #reversed > 0 then call_chunked('LPUSH', q, reversed, 400) end
    if fresh > 0 then schedule(host) end
  end
  if #writes > 0 then call_chunked('HSET', P .. 'v', writes, 400) end
  if queued > 0 then
    redis.call('HINCRBY', META, 'pending', queued)
    poke()
  end
  return moved
end)
