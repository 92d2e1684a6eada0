"""The Lua functions every script of :mod:`~shoal.state._redis_lua` starts with.

``PRELUDE`` names the crawl's keys and holds the steps several scripts share: the seen set
(linear hashing over intset buckets), admitting URLs, scheduling a host, reclaiming expired
leases and leasing jobs. ``GUARD`` refuses to run on a crawl whose keys are gone.

Key layout (``P`` = ``shoal:{<crawl id>}:``; one hash tag, so one Cluster slot)::

    P meta           HASH  version, identity (JSON), per_host, delay (ms), robots (1/0);
                           counters queued, leased, done, failed; lseq (lease ids);
                           seen set shape: sl (level), ss (split), st (target), sn (count)
    P s:<b>          SET   seen fingerprints of bucket b, as signed 64-bit ints: an intset
    P hosts          SET   every host ("scheme://host[:port]") ever queued
    P h:<host>       HASH  inflight, next (ms: earliest next start), delay (ms, if not the
                           crawl's), pol (none|txt; absent: robots.txt unknown), rtxt, cdelay,
                           asked (1 while its robots job is out), rattempt, dl, done, failed
    P q:<host>       LIST  the host's queued entries, front first
    P ready          ZSET  host -> next start (ms), for hosts that can give out a job
    P delayed        ZSET  "<host>\\n<entry>" -> when a retry may go back to its queue (ms)
    P l              HASH  lease id -> "<worker>\\n<epoch>\\n<host>\\n<released>\\n<entry>"
    P le             ZSET  lease id -> expiry (ms)
    P events         STREAM one entry per change a waiting worker may care about (short)
    P workers        SET   worker ids
    P w:<worker>     HASH  epoch, offset, token (last commit), seen (ms), done, failed,
                           lreq/lrep (last lease request and its reply, for a resend)
    P wl:<worker>    SET   the worker's lease ids
    P jc:<fp>        SET   redirect targets the job of URL fingerprint fp claimed (until
                           the job commits; a week at most)

An entry is ``"<attempt> <kind p|r|s> <depth> <url bytes> <url><referrer>"``: one compact
string per queued URL in a list, about its URL and referrer in size.

Lua in Redis has only doubles for numbers, exact up to 2^53. So fingerprints (signed 64-bit)
stay strings from end to end and are never turned into Lua numbers: ``low_bits`` reads the
bucket number off the decimal digits. Times are integer milliseconds of the server's clock
(``TIME``; allowed in scripts since Redis replicates a script's effects, the only mode on 7.0),
about 1.8e12: exact in a double, and ``tostring`` prints them without an exponent.
"""

from __future__ import annotations

__all__ = ["GUARD", "PRELUDE"]

PRELUDE = r"""
local P = KEYS[1]
local META = P .. 'meta'
local READY = P .. 'ready'
local DELAYED = P .. 'delayed'
local LEASES = P .. 'l'
local EXPIRY = P .. 'le'
local EVENTS = P .. 'events'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function num(v, default)
  if v then return tonumber(v) end
  return default
end

-- (fingerprint as an unsigned 64-bit number) mod m, for m a power of two below 2^40, read off
-- the signed decimal string digit by digit so that no value above 2^53 is ever formed.
-- For a negative s, unsigned = 2^64 - |s|, and 2^64 mod m = 0.
local function low_bits(s, m)
  local neg = string.byte(s, 1) == 45
  local r = 0
  for i = (neg and 2 or 1), #s do
    r = (r * 10 + string.byte(s, i) - 48) % m
  end
  if neg then r = (m - r) % m end
  return r
end

-- Linear hashing over bucket sets: 2^level + split buckets. Bucket b < split has been split
-- at this level and is addressed with one more bit.
local function bucket_of(fp, level, split)
  local b = low_bits(fp, 2 ^ (level + 1))
  local lo = b % (2 ^ level)
  if lo < split then return b end
  return lo
end

local function sadd_all(key, members)
  for i = 1, #members, 500 do
    redis.call('SADD', key, unpack(members, i, math.min(i + 499, #members)))
  end
end

-- Split one bucket when the average bucket holds more than the target. Buckets not yet split
-- at this level hold about twice the average, so the target is kept near 40% of the
-- server's set-max-intset-entries: every bucket stays a compact intset (8 bytes a member).
-- Returns the new (level, split).
local function maybe_split(count, level, split, target)
  if count <= (2 ^ level + split) * target then return level, split end
  local old = P .. 's:' .. split
  local members = redis.call('SMEMBERS', old)
  local stay, move = {}, {}
  local wide = 2 ^ (level + 1)
  for _, fp in ipairs(members) do
    if low_bits(fp, wide) == split then stay[#stay + 1] = fp else move[#move + 1] = fp end
  end
  -- Re-created rather than trimmed: a bucket that once outgrew the intset limit became a
  -- hash table, and only a new key is an intset again.
  redis.call('DEL', old)
  sadd_all(old, stay)
  sadd_all(P .. 's:' .. (split + 2 ^ level), move)
  split = split + 1
  if split == 2 ^ level then
    level = level + 1
    split = 0
  end
  redis.call('HSET', META, 'sl', level, 'ss', split)
  return level, split
end

-- Add fingerprints to the seen set; returns a table of 1 (new) / 0 (seen before), and the
-- number of new ones.
local function see(fps)
  local m = redis.call('HMGET', META, 'sl', 'ss', 'st', 'sn')
  local level, split, target, count = tonumber(m[1]), tonumber(m[2]), tonumber(m[3]), tonumber(m[4])
  local out, added = {}, 0
  for i, fp in ipairs(fps) do
    local new = redis.call('SADD', P .. 's:' .. bucket_of(fp, level, split), fp)
    out[i] = new
    if new == 1 then
      added = added + 1
      count = count + 1
      level, split = maybe_split(count, level, split, target)
    end
  end
  if added > 0 then redis.call('HSET', META, 'sn', count) end
  return out, added
end

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
-- pending down): one entry in a short stream, which waiters block on with XREAD.
local function poke()
  redis.call('XADD', EVENTS, 'MAXLEN', '~', 100, '*', 'e', '')
end

local function per_host()
  return tonumber(redis.call('HGET', META, 'per_host'))
end

-- Put a host in READY (scored by its next allowed start) if it can give out a job now or
-- later on the clock alone, and take it out otherwise (no URLs, all slots busy, or its
-- robots.txt is being fetched).
local function schedule(host, limit)
  local hk = P .. 'h:' .. host
  local f = redis.call('HMGET', hk, 'inflight', 'pol', 'asked', 'next')
  local can = num(f[1], 0) < limit and redis.call('LLEN', P .. 'q:' .. host) > 0
  if can and not f[2] then can = f[3] ~= '1' end
  if can then
    redis.call('ZADD', READY, num(f[4], 0), host)
  else
    redis.call('ZREM', READY, host)
  end
end

local function drop_lease(id, worker)
  redis.call('HDEL', LEASES, id)
  redis.call('ZREM', EXPIRY, id)
  redis.call('SREM', P .. 'wl:' .. worker, id)
end

-- Give a lease's URL back: its holder is gone (expired, or the worker registered again).
local function reclaim(id, limit)
  local rec = redis.call('HGET', LEASES, id)
  if not rec then
    redis.call('ZREM', EXPIRY, id)
    return 0
  end
  local worker, _, host, released, entry = parse_lease(rec)
  drop_lease(id, worker)
  redis.call('HINCRBY', META, 'leased', -1)
  local hk = P .. 'h:' .. host
  if released ~= '1' then redis.call('HINCRBY', hk, 'inflight', -1) end
  local _, kind = entry_head(entry)
  if kind == 'r' then
    redis.call('HDEL', hk, 'asked')
    redis.call('HINCRBY', hk, 'rattempt', 1)
  else
    -- Counted as a try: a URL that kills every worker that takes it must run out of tries.
    redis.call('LPUSH', P .. 'q:' .. host, bump(entry))
    redis.call('HINCRBY', META, 'queued', 1)
  end
  schedule(host, limit)
  return 1
end

local function reclaim_expired(now, limit)
  local ids = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', now, 'LIMIT', 0, 256)
  for _, id in ipairs(ids) do reclaim(id, limit) end
  if #ids > 0 then poke() end
end

-- Queue the n URLs given as ARGV triples (fingerprint, host, entry) from ARGV[first] on:
-- dedupe, append to the host's queue, pending + 1 each. Returns 1 (queued) / 0 (seen) per
-- URL, and how many were new.
local function admit(first, n)
  local fps = {}
  for i = 1, n do fps[i] = ARGV[first + (i - 1) * 3] end
  local new, added = see(fps)
  if added == 0 then return new, 0 end
  local robots_on = redis.call('HGET', META, 'robots') == '1'
  local touched = {}
  for i = 1, n do
    if new[i] == 1 then
      local host = ARGV[first + 1 + (i - 1) * 3]
      if redis.call('SADD', P .. 'hosts', host) == 1 and not robots_on then
        redis.call('HSET', P .. 'h:' .. host, 'pol', 'none')
      end
      redis.call('RPUSH', P .. 'q:' .. host, ARGV[first + 2 + (i - 1) * 3])
      touched[host] = true
    end
  end
  redis.call('HINCRBY', META, 'queued', added)
  local limit = per_host()
  for host in pairs(touched) do schedule(host, limit) end
  return new, added
end

-- Lease up to n jobs to worker (epoch checked by the caller), at most budget (-1: none) of
-- them first tries of pages, for ttl ms; appends to out {ready_in_ms, last event id,
-- ms until the first lease expiry, id, host, entry, ...}.
local function lease_jobs(out, worker, epoch, n, budget, ttl, now, limit)
  reclaim_expired(now, limit)

  -- Retries whose wait is over go to the front of their host's queue.
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', DELAYED, '-inf', now, 'LIMIT', 0, 512)) do
    local host, entry = string.match(member, '^([^\n]*)\n(.*)$')
    redis.call('ZREM', DELAYED, member)
    redis.call('LPUSH', P .. 'q:' .. host, entry)
    redis.call('HINCRBY', P .. 'h:' .. host, 'dl', -1)
    schedule(host, limit)
  end

  local default_delay = tonumber(redis.call('HGET', META, 'delay'))
  out[1], out[2], out[3] = 0, '0-0', -1
  local taken, fresh, skipped, examined = 0, 0, 0, 0
  local wl = P .. 'wl:' .. worker

  local function new_lease(host, entry)
    local id = tostring(redis.call('HINCRBY', META, 'lseq', 1))
    redis.call('HSET', LEASES, id, worker .. '\n' .. epoch .. '\n' .. host .. '\n0\n' .. entry)
    redis.call('ZADD', EXPIRY, now + ttl, id)
    redis.call('SADD', wl, id)
    redis.call('HINCRBY', META, 'leased', 1)
    out[#out + 1] = id
    out[#out + 1] = host
    out[#out + 1] = entry
    taken = taken + 1
  end

  -- Each pass looks at the hosts ready now, least recently started first; a host taken from
  -- is scored again by its next start, so with room left it may come round in a later pass.
  -- Hosts held back by the page budget are skipped (they stay ready for other workers).
  while taken < n and examined < n + 64 do
    local hosts = redis.call('ZRANGEBYSCORE', READY, '-inf', now, 'LIMIT', skipped, n - taken)
    if #hosts == 0 then break end
    for _, host in ipairs(hosts) do
      examined = examined + 1
      local hk = P .. 'h:' .. host
      local f = redis.call('HMGET', hk, 'inflight', 'pol', 'asked', 'delay', 'rattempt')
      if num(f[1], 0) >= limit then
        redis.call('ZREM', READY, host)
      elseif not f[2] then
        if f[3] == '1' then
          redis.call('ZREM', READY, host)
        else
          -- The one robots.txt job of this host, for the whole crawl; its pages wait for it.
          redis.call('HSET', hk, 'asked', '1')
          redis.call('HINCRBY', hk, 'inflight', 1)
          local url = host .. '/robots.txt'
          new_lease(host, (num(f[5], 0) + 1) .. ' r 0 ' .. #url .. ' ' .. url)
          redis.call('ZREM', READY, host)
        end
      else
        local q = P .. 'q:' .. host
        local head = redis.call('LINDEX', q, 0)
        if not head then
          redis.call('ZREM', READY, host)
        else
          local attempt, kind = entry_head(head)
          if kind == 'p' and attempt == 1 and budget >= 0 and fresh >= budget then
            skipped = skipped + 1
          else
            if kind == 'p' and attempt == 1 then fresh = fresh + 1 end
            redis.call('LPOP', q)
            redis.call('HINCRBY', META, 'queued', -1)
            redis.call('HINCRBY', hk, 'inflight', 1)
            local delay = num(f[4], default_delay)
            redis.call('HSET', hk, 'next', now + delay)
            new_lease(host, head)
            schedule(host, limit)
          end
        end
      end
      if taken >= n then break end
    end
  end

  -- How long until something may be ready without any other event: a host's next start or a
  -- retry's wait; and apart, a lease's expiry (its URL comes back then), which a worker with
  -- jobs of its own need not wake for (its own next lease reclaims it).
  local soon = nil
  if taken >= n then
    soon = now
  else
    local r = redis.call('ZRANGEBYSCORE', READY, '(' .. now, '+inf', 'LIMIT', 0, 1, 'WITHSCORES')
    if r[2] then soon = tonumber(r[2]) end
    local z = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
    if z[2] and (soon == nil or tonumber(z[2]) < soon) then soon = tonumber(z[2]) end
  end
  if soon == nil then out[1] = -1 else out[1] = math.max(0, soon - now) end
  local z = redis.call('ZRANGE', EXPIRY, 0, 0, 'WITHSCORES')
  if z[2] then out[3] = math.max(0, tonumber(z[2]) - now) end
  -- The last event this reply already reflects: wait() blocks for a later one.
  local last = redis.call('XREVRANGE', EVENTS, '+', '-', 'COUNT', 1)
  if last[1] then out[2] = last[1][1] else out[2] = '0-0' end
end

local function worker_epoch(worker)
  return redis.call('HGET', P .. 'w:' .. worker, 'epoch')
end
"""

# Every script but INIT starts with this: a crawl whose keys vanished (deleted, evicted, or a
# Redis restarted without its data) is an error, never a fresh empty crawl.
GUARD = r"""
if redis.call('EXISTS', META) == 0 then
  return redis.error_reply('SHOAL_GONE the crawl has no state in Redis')
end
"""
