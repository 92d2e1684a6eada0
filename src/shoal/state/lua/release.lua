-- RELEASE: a fetch is over: queue its page's links, free the host's slot (or queue a
-- retry, or store a robots policy), and lease up to take jobs in the same step (the slot the
-- finished job leaves), as LEASE does.
--
-- args (built by release() in shoal/state/_redis_lua.py; -1 and '' are its "none"):
--   [1]      worker          the worker's id
--   [2]      epoch           its epoch
--   [3]      lease_id        the lease ending
--   [4]      outcome         done | failed | retry
--   [5]      retry_ms        a retry waits this long before it goes back to its queue
--   [6]      hold_ms         ask the host nothing for this long (-1: no hold; -2: park the
--                            host, not asked again in this crawl: a Retry-After longer than
--                            a crawl waits; its URLs stay queued, not counted as work left)
--   [7]      policy          a robots job's result: 'none' | 'txt' ('': none given)
--   [8]      robots_txt      the robots.txt text when policy is 'txt'
--   [9]      crawl_delay_ms  its Crawl-delay (-1: none)
--   [10]     n               how many links follow
--   [11 ...] links           n triples (fingerprint, host, entry): queued first, also
--                            when the lease is gone (they are real links, and queued
--                            before the URL can end)
--   [at]     take            jobs to lease in the same step (0: none); at = 11 + 3n
--   [at + 1] budget          as LEASE's (-1: no limit)
--   [at + 2] ttl_ms          as LEASE's
--   [at + 3] request         as LEASE's
-- Returns {1 when applied (or already released) / 0 when the lease is no longer this
-- worker's, then 1/0 per link (queued / seen)}, followed when take > 0 by LEASE's reply
-- (no jobs when the worker is fenced). With take > 0 the same request sent again gets the
-- reply it had.
register('release', function(args)
  local worker, epoch, id, outcome = args[1], args[2], args[3], args[4]
  local retry_ms, hold_ms = tonumber(args[5]), tonumber(args[6])
  local pol, rtxt, cdelay = args[7], args[8], tonumber(args[9])
  local nlinks = tonumber(args[10])
  local at = 11 + nlinks * 3
  local take = tonumber(args[at])
  local wk = P .. 'w:' .. worker
  local current = nil
  if take > 0 then
    local replay
    current, replay = lease_request(wk, epoch, args[at + 3])
    if replay then return replay end
  end
  local new, added = admit(args, 11, nlinks)
  if added > 0 then poke() end

  -- The host's next start is at least t.
  local function hold_until(hk, t)
    if t > num(redis.call('HGET', hk, 'next'), 0) then redis.call('HSET', hk, 'next', t) end
  end

  -- Returns 1 when applied (or already released), 0 when the lease is not this worker's.
  local function release_lease()
    local rec = redis.call('HGET', LEASES, id)
    if not rec then return 0 end
    local w, e, host, released, entry = parse_lease(rec)
    if w ~= worker or e ~= epoch then return 0 end
    if released == '1' then return 1 end
    local now = now_ms()
    local hk = P .. 'h:' .. host
    local inflight = redis.call('HINCRBY', hk, 'inflight', '-1')
    -- A host below its limit before this release was ready (or not) for reasons this
    -- release leaves alone; one at its limit may be ready now.
    local limit = CFG.limit
    if CFG.paces then limit = num(redis.call('HGET', hk, 'limit'), limit) end
    local moved = inflight == limit - 1
    if hold_ms >= 0 then
      hold_until(hk, now + hold_ms)
      moved = true
    elseif hold_ms == PARK then
      hold_until(hk, PARKED_UNTIL)
      redis.call('SADD', P .. 'parked', host)
      moved = true
    end
    local _, kind = entry_head(entry)
    if kind == 'r' then
      -- A robots lease ends here: the policy is its whole result (it is never committed).
      drop_lease(id)
      redis.call('HINCRBY', META, 'pending', -1)
      redis.call('HDEL', hk, 'asked')
      if outcome == 'retry' or pol == '' then
        redis.call('HINCRBY', hk, 'rattempt', 1)
        hold_until(hk, now + retry_ms)
      else
        redis.call('HSET', hk, 'pol', pol, 'rtxt', rtxt)
        if cdelay >= 0 then
          redis.call('HSET', hk, 'cdelay', cdelay)
          if cdelay > num(redis.call('HGET', hk, 'delay'), CFG.delay) then
            redis.call('HSET', hk, 'delay', cdelay)
          end
        end
      end
      -- robots.txt is a request to the host like any other: its first page waits the delay
      -- after it (Crawl-delay included), as every page after a page does.
      hold_until(hk, now + num(redis.call('HGET', hk, 'delay'), CFG.delay))
      moved = true
    elseif kind == 's' and outcome ~= 'retry' then
      -- A sitemap lease ends here too: its pages were queued before it is released, and it
      -- leaves no record or visit to commit (waiting for a commit would hold pending > 0).
      drop_lease(id)
      redis.call('HINCRBY', META, 'pending', -1)
    elseif outcome == 'retry' then
      drop_lease(id)
      redis.call('ZADD', DELAYED, now + retry_ms, host .. '\n' .. bump(entry))
      due_by(now + retry_ms)
      redis.call('HINCRBY', hk, 'dl', 1)
    else
      -- Done or failed: the slot is free now, the lease stays until the writer commits it.
      redis.call('HSET', LEASES, id, w .. '\n' .. e .. '\n' .. host .. '\n1\n' .. entry)
    end
    if moved then schedule(host) end
    poke()
    return 1
  end

  local out = {release_lease()}
  for i = 1, #new do out[#out + 1] = new[i] end
  if take > 0 then
    if current == epoch then
      local now = now_ms()
      local leased = {}
      lease_jobs(leased, worker, epoch, take, tonumber(args[at + 1]), tonumber(args[at + 2]), now)
      for i = 1, #leased do out[#out + 1] = leased[i] end
      remember_reply(wk, now, args[at + 3], out)
    else
      out[#out + 1], out[#out + 2], out[#out + 3], out[#out + 4] = -1, '0-0', -1,
        int(CFG.run)
    end
  end
  return out
end)
