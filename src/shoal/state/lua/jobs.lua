-- An entry is '<attempt> <kind> <depth> <url byte length> <url><referrer>'; kind is one
-- letter (p page, r robots, s sitemap). Scripts only read the first two fields.
local function entry_head(e)
  local attempt, kind = string.match(e, '^(%d+) (%a)')
  return tonumber(attempt), kind
end

local function bump(e)
  local attempt, rest = string.match(e, '^(%d+)(.*)$')
  return tostring(tonumber(attempt) + 1) .. rest
end

-- A lease record: '<worker>\n<epoch>\n<host>\n<released 0|1>\n<entry>'.
local function parse_lease(rec)
  local worker, epoch, host, released, entry =
    string.match(rec, '^([^\n]*)\n([^\n]*)\n([^\n]*)\n([01])\n(.*)$')
  return worker, epoch, host, released, entry
end

-- Something changed that may let a waiting worker go on (a URL queued or back, a slot freed,
-- pending down): one entry in a short stream, which waiters block on with XREAD. POKED is
-- its id: the last event, known without asking the stream again. Only while a worker may
-- be waiting ('wt', set by a lease that could not give all it was asked for: see
-- may_wait): a busy crawl, whose every lease is filled, writes no events.
local function poke()
  if not POKED and now_ms() <= CFG.waiters then
    POKED = redis.call('XADD', EVENTS, 'MAXLEN', '~', 100, '*', 'e', '')
  end
end

-- The worker given this reply may block on the stream: every change pokes until then. The
-- window is the longest block a client makes (RedisCrawlState.wait caps it at 5 s) and a
-- margin for the reply's way to it; a block that outlives it (a reply late by more than
-- the margin) misses wake-ups and ends on its own timeout: later, never hung.
local WAIT_WINDOW_MS = 15000
local function may_wait(now)
  if now + WAIT_WINDOW_MS > CFG.waiters + 1000 then
    CFG.waiters = now + WAIT_WINDOW_MS
    redis.call('HSET', META, 'wt', CFG.waiters)
  end
end

-- The last event this call's reply reflects (a worker's wait blocks for a later one).
local function last_event()
  if POKED then return POKED end
  local last = redis.call('XREVRANGE', EVENTS, '+', '-', 'COUNT', 1)
  if last[1] then return last[1][1] end
  return '0-0'
end

-- Something in EXPIRY or DELAYED falls due at t: keep 'due' no later than that, so that
-- sweep() looks in time.
local function due_by(t)
  if CFG.due == nil or t < CFG.due then
    CFG.due = t
    redis.call('HSET', META, 'due', t)
  end
end

-- A hold argument that parks a host for the rest of the crawl, and the 'next' start it then
-- gets: far past any clock (2^50 ms, exact in a double), so it never comes due.
local PARK = -2
local PARKED_UNTIL = 1125899906842624

-- A host seen for the first time: with robots off its policy is known ('none'); a host
-- pattern of the crawl (P paces, from INIT) gives it its own limit and delay, 'name:port'
-- before 'name' field by field, as pace_for does in shoal/state/_jobs.py. Costs nothing in
-- a crawl without patterns, and one HMGET per new host in one with them.
local function new_host(host)
  local hk = P .. 'h:' .. host
  if not CFG.robots then redis.call('HSET', hk, 'pol', 'none') end
  if not CFG.paces then return end
  local scheme, rest = string.match(host, '^(%a+)://(.*)$')
  if not rest then return end
  local name, port = string.match(rest, '^(.*):(%d+)$')
  if not name then
    name = rest
    if scheme == 'https' then port = '443' else port = '80' end
  end
  port = tostring(tonumber(port))
  -- 'example.com.' is example.com: patterns have no trailing dot (host_name_port too)
  name = string.gsub(name, '%.+$', '')
  local v = redis.call('HMGET', P .. 'paces', name .. ':' .. port, name)
  local limit, delay = nil, nil
  for i = 1, 2 do
    if v[i] then
      local l, d = string.match(v[i], '^(-?%d+) (-?%d+)$')
      if not limit and tonumber(l) >= 0 then limit = l end
      if not delay and tonumber(d) >= 0 then delay = d end
    end
  end
  if limit then redis.call('HSET', hk, 'limit', limit) end
  if delay then redis.call('HSET', hk, 'delay', delay) end
end

-- Put a host in READY (scored by its next allowed start) if it can give out a job now or
-- later on the clock alone, and take it out otherwise (no URLs, all slots busy, or its
-- robots.txt is being fetched). Only a change to one of those moves a host in or out, so
-- callers skip this when they know none happened.
local function schedule(host)
  local hk = P .. 'h:' .. host
  local f = redis.call('HMGET', hk, 'inflight', 'pol', 'asked', 'next', 'limit')
  local can = num(f[1], 0) < num(f[5], CFG.limit) and redis.call('LLEN', P .. 'q:' .. host) > 0
  if can and not f[2] then can = f[3] ~= '1' end
  if can and num(f[4], 0) >= PARKED_UNTIL then can = false end
  if can then
    redis.call('ZADD', READY, num(f[4], 0), host)
  else
    redis.call('ZREM', READY, host)
  end
end

local function drop_lease(id)
  redis.call('HDEL', LEASES, id)
  redis.call('ZREM', EXPIRY, id)
end

-- Give a lease's URL back: its holder is gone (expired, or the worker registered again).
-- rec: the lease's record if the caller has it.
local function reclaim(id, rec)
  rec = rec or redis.call('HGET', LEASES, id)
  if not rec then
    redis.call('ZREM', EXPIRY, id)
    return 0
  end
  local _, _, host, released, entry = parse_lease(rec)
  drop_lease(id)
  local hk = P .. 'h:' .. host
  if released ~= '1' then redis.call('HINCRBY', hk, 'inflight', -1) end
  local _, kind = entry_head(entry)
  if kind == 'r' then
    -- A robots job is never queued: it ends here, and the host will ask for another.
    redis.call('HDEL', hk, 'asked')
    redis.call('HINCRBY', hk, 'rattempt', 1)
    redis.call('HINCRBY', META, 'pending', -1)
  else
    -- Counted as a try: a URL that kills every worker that takes it must run out of tries.
    redis.call('LPUSH', P .. 'q:' .. host, bump(entry))
  end
  schedule(host)
  return 1
end

-- Reclaim expired leases and move retries whose wait is over to the front of their host's
-- queue; only once 'due' has passed, so a busy crawl does not look at every lease.
local function sweep(now)
  if CFG.due == nil or now < CFG.due then return end
  local ids = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', now, 'LIMIT', 0, 256)
  for _, id in ipairs(ids) do reclaim(id, nil) end
  if #ids > 0 then poke() end
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', DELAYED, '-inf', now, 'LIMIT', 0, 512)) do
    local host, entry = string.match(member, '^([^\n]*)\n(.*)$')
    redis.call('ZREM', DELAYED, member)
    redis.call('LPUSH', P .. 'q:' .. host, entry)
    redis.call('HINCRBY', P .. 'h:' .. host, 'dl', -1)
    schedule(host)
  end
  -- What falls due next (now again, if more were due than one sweep takes).
  local a = redis.call('ZRANGE', EXPIRY, 0, 0, 'WITHSCORES')
  local b = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
  local due = nil
  if a[2] then due = tonumber(a[2]) end
  if b[2] and (due == nil or tonumber(b[2]) < due) then due = tonumber(b[2]) end
  CFG.due = due
  if due then redis.call('HSET', META, 'due', due) else redis.call('HDEL', META, 'due') end
end

-- Queue the n URLs given as triples (fingerprint, host, entry) in args from args[first] on:
-- dedupe, append to the host's queue, pending + 1 each. Returns 1 (queued) / 0 (seen) per
-- URL, and how many were new.
local function admit(args, first, n)
  local fps = {}
  for i = 1, n do fps[i] = args[first + (i - 1) * 3] end
  local new, added = see(fps)
  if added == 0 then return new, 0 end
  local pushed, touched = {}, {}
  for i = 1, n do
    if new[i] == 1 then
      local host = args[first + 1 + (i - 1) * 3]
      local e = args[first + 2 + (i - 1) * 3]
      -- A sitemap goes before its host's pages: in a recrawl its <lastmod>s say which of
      -- them to revisit first (lastmod.lua).
      local push = 'RPUSH'
      if string.match(e, '^%d+ (%a)') == 's' then push = 'LPUSH' end
      local len = redis.call(push, P .. 'q:' .. host, e)
      local count = (pushed[host] or 0) + 1
      pushed[host] = count
      -- A queue that was not empty before kept its host's place in READY as it was, and
      -- its host is known: only a push to an empty queue can bring a new host.
      if len == count then
        touched[host] = true
        if count == 1 and redis.call('SADD', P .. 'hosts', host) == 1 then new_host(host) end
      end
    end
  end
  redis.call('HINCRBY', META, 'pending', int(added))
  for host in pairs(touched) do schedule(host) end
  return new, added
end

-- A lease request is answered once: the same request sent again (its reply lost with the
-- connection) gets the reply it had. Returns the worker's current epoch, and that reply
-- when this is such a resend from the current epoch.
local function lease_request(wk, epoch, request)
  local w = redis.call('HMGET', wk, 'epoch', 'lreq')
  if w[1] == epoch and w[2] == request then
    return w[1], cmsgpack.unpack(redis.call('HGET', wk, 'lrep'))
  end
  return w[1], nil
end

-- Keeps a lease request's reply for a resend (lease_request), and the worker's last sign.
local function remember_reply(wk, now, request, out)
  redis.call('HSET', wk, 'seen', int(now), 'lreq', request, 'lrep', cmsgpack.pack(out))
end

-- Lease up to n jobs to worker (epoch checked by the caller), at most budget (-1: none) of
-- them first tries of pages, for ttl ms; appends to out {ready_in_ms, last event id,
-- ms until the first lease expiry, the run the jobs belong to (CFG.run), id, host, entry,
-- ...}. When it leases all n, the worker
-- will not wait on a clock or the stream: the two times are then -1 and 0 and the event id
-- is '0-0' unless this call made one.
local function lease_jobs(out, worker, epoch, n, budget, ttl, now)
  sweep(now)
  local taken, fresh, skipped, examined, robots = 0, 0, 0, 0, 0
  local hosts_got, entries_got = {}, {}

  local function got(host, entry)
    taken = taken + 1
    hosts_got[taken] = host
    entries_got[taken] = entry
  end

  -- Each pass looks at the hosts ready now, least recently started first; a host taken from
  -- is scored again by its next start, so with room left it may come round in a later pass.
  -- Hosts held back by the page budget are skipped (they stay ready for other workers).
  while taken < n and examined < n + 64 do
    local hosts = redis.call('ZRANGEBYSCORE', READY, '-inf', int(now), 'LIMIT', int(skipped),
      int(n - taken))
    if #hosts == 0 then break end
    for _, host in ipairs(hosts) do
      examined = examined + 1
      local hk = P .. 'h:' .. host
      local f = redis.call('HMGET', hk, 'inflight', 'pol', 'asked', 'delay', 'rattempt', 'limit')
      local inflight = num(f[1], 0)
      local limit = num(f[6], CFG.limit)
      if inflight >= limit then
        redis.call('ZREM', READY, host)
      elseif not f[2] then
        redis.call('ZREM', READY, host)
        if f[3] ~= '1' then
          -- The one robots.txt job of this host, for the whole crawl; its pages wait for it.
          -- It is a lease of nothing queued: pending counts it while it is out.
          redis.call('HSET', hk, 'asked', '1', 'inflight', inflight + 1)
          local url = host .. '/robots.txt'
          got(host, (num(f[5], 0) + 1) .. ' r 0 ' .. #url .. ' ' .. url)
          robots = robots + 1
        end
      else
        local q = P .. 'q:' .. host
        local head = redis.call('LPOP', q)
        if not head then
          redis.call('ZREM', READY, host)
        else
          local attempt, kind = entry_head(head)
          if kind == 'p' and attempt == 1 and budget >= 0 and fresh >= budget then
            redis.call('LPUSH', q, head)
            skipped = skipped + 1
          else
            if kind == 'p' and attempt == 1 then fresh = fresh + 1 end
            inflight = inflight + 1
            local nxt = int(now + num(f[4], CFG.delay))
            redis.call('HSET', hk, 'inflight', int(inflight), 'next', nxt)
            got(host, head)
            if inflight < limit and redis.call('LLEN', q) > 0 then
              redis.call('ZADD', READY, nxt, host)
            else
              redis.call('ZREM', READY, host)
            end
          end
        end
      end
      if taken >= n then break end
    end
  end

  out[1], out[2], out[3], out[4] = 0, '0-0', -1, int(CFG.run)
  if taken > 0 then
    local last = redis.call('HINCRBY', META, 'lseq', int(taken))
    local recs, expiries = {}, {}
    local expiry = int(now + ttl)
    for i = 1, taken do
      local id = int(last - taken + i)
      local host, entry = hosts_got[i], entries_got[i]
      recs[#recs + 1] = id
      recs[#recs + 1] = worker .. '\n' .. epoch .. '\n' .. host .. '\n0\n' .. entry
      expiries[#expiries + 1] = expiry
      expiries[#expiries + 1] = id
      out[#out + 1] = id
      out[#out + 1] = host
      out[#out + 1] = entry
    end
    call_chunked('HSET', LEASES, recs, 400)
    call_chunked('ZADD', EXPIRY, expiries, 400)
    due_by(now + ttl)
    if robots > 0 then redis.call('HINCRBY', META, 'pending', robots) end
  end

  if taken >= n then
    if POKED then out[2] = POKED end
    return
  end
  -- How long until something may be ready without any other event: a host's next start or a
  -- retry's wait; and apart, a lease's expiry (its URL comes back then), which a worker with
  -- jobs of its own need not wake for (its own next lease reclaims it).
  local soon = nil
  local r = redis.call('ZRANGEBYSCORE', READY, '(' .. int(now), '+inf', 'LIMIT', 0, 1,
    'WITHSCORES')
  if r[2] then soon = tonumber(r[2]) end
  local z = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
  if z[2] and (soon == nil or tonumber(z[2]) < soon) then soon = tonumber(z[2]) end
  if soon == nil then out[1] = -1 else out[1] = math.max(0, soon - now) end
  z = redis.call('ZRANGE', EXPIRY, 0, 0, 'WITHSCORES')
  if z[2] then out[3] = math.max(0, tonumber(z[2]) - now) end
  may_wait(now)
  out[2] = last_event()
end
