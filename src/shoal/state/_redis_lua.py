"""The Lua scripts behind :class:`~shoal.state.RedisCrawlState`.

Every change to a crawl's shared state is one of these scripts, so each is atomic: no other
client sees a half-done step, and a worker killed between two calls leaves the state whole.
The key layout and what each script guarantees are described in ``_redis.py``; here are only
the texts. Each script is ``PRELUDE`` + its body.

Lua in Redis has only doubles for numbers, exact up to 2^53. So fingerprints (signed 64-bit)
stay strings from end to end and are never turned into Lua numbers: ``low_bits`` reads the
bucket number off the decimal digits. Times are integer milliseconds of the server's clock
(``TIME``; allowed in scripts since Redis replicates a script's effects, the only mode on 7.0),
about 1.8e12: exact in a double, and ``tostring`` prints them without an exponent.

``KEYS[1]`` is the crawl's prefix ``shoal:{<crawl id>}:``; scripts build the other key
names from it. They all share its hash tag, hence one hash slot (what Redis Cluster needs of
the keys one script touches).
"""

from __future__ import annotations

__all__ = [
    "CLAIM",
    "CLAIM_FOR",
    "COMMIT",
    "INIT",
    "LEASE",
    "REGISTER",
    "RELEASE",
    "RENEW",
    "SET_DELAY",
    "SUBMIT",
]

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

# ARGV: version, identity, per_host, delay_ms, robots (1/0), bucket target.
# Creates the crawl's meta hash unless it exists; returns what is stored.
INIT = (
    PRELUDE
    + r"""
if redis.call('EXISTS', META) == 0 then
  redis.call('HSET', META, 'version', ARGV[1], 'identity', ARGV[2], 'per_host', ARGV[3],
    'delay', ARGV[4], 'robots', ARGV[5], 'st', ARGV[6], 'sl', 0, 'ss', 0, 'sn', 0,
    'queued', 0, 'leased', 0, 'done', 0, 'failed', 0, 'lseq', 0, 'created', now_ms())
  return {'created'}
end
local m = redis.call('HMGET', META, 'version', 'identity', 'per_host', 'delay', 'robots')
return {'exists', m[1] or '', m[2] or '', m[3] or '', m[4] or '', m[5] or ''}
"""
)

# ARGV: worker. A new epoch for the worker; every lease of an older epoch comes back.
# Returns {epoch, committed offset, leases reclaimed}.
REGISTER = (
    PRELUDE
    + GUARD
    + r"""
local worker = ARGV[1]
local wk = P .. 'w:' .. worker
redis.call('SADD', P .. 'workers', worker)
local epoch = redis.call('HINCRBY', wk, 'epoch', 1)
local limit = per_host()
local back = 0
for _, id in ipairs(redis.call('SMEMBERS', P .. 'wl:' .. worker)) do
  back = back + reclaim(id, limit)
end
redis.call('DEL', P .. 'wl:' .. worker)
redis.call('HSET', wk, 'seen', now_ms())
if back > 0 then poke() end
return {epoch, redis.call('HGET', wk, 'offset') or '0', back}
"""
)

# ARGV: n, then n triples (fingerprint, host, entry). Returns 1/0 per URL (queued / seen).
SUBMIT = (
    PRELUDE
    + GUARD
    + r"""
local new, added = admit(2, tonumber(ARGV[1]))
if added > 0 then poke() end
return new
"""
)

# ARGV: fingerprints. Marks them seen without queueing; returns 1/0 per fingerprint.
CLAIM = (
    PRELUDE
    + GUARD
    + r"""
local new = see(ARGV)
return new
"""
)

# ARGV: job fingerprint, url fingerprint, keep_ms. A redirect target fetched in place by
# the job of that fingerprint: seen by the crawl, and remembered as the job's own, so a
# redo of the job (a retry, or its lease reclaimed from a dead worker) may claim it again.
# Returns 1 if the job may fetch it, 0 if another job had it.
CLAIM_FOR = (
    PRELUDE
    + GUARD
    + r"""
local jc = P .. 'jc:' .. ARGV[1]
if redis.call('SISMEMBER', jc, ARGV[2]) == 1 then return 1 end
local new = see({ARGV[2]})
if new[1] == 1 then
  redis.call('SADD', jc, ARGV[2])
  redis.call('PEXPIRE', jc, tonumber(ARGV[3]))
end
return new[1]
"""
)

# ARGV: worker, epoch, n, budget (-1: none), ttl_ms, request id.
# Returns {ready_in_ms (-1: nothing waits on a clock), last event id, ms until the first
# lease expiry (-1: none), id, host, entry, ...}
# or {'fenced'} when the worker was registered again by another process. The same request
# sent again (its reply was lost with the connection) gets the same reply, not new leases.
LEASE = (
    PRELUDE
    + GUARD
    + r"""
local worker, epoch = ARGV[1], ARGV[2]
local wk = P .. 'w:' .. worker
local w = redis.call('HMGET', wk, 'epoch', 'lreq', 'lrep')
if w[1] ~= epoch then return {'fenced'} end
if w[2] == ARGV[6] then return cmsgpack.unpack(w[3]) end
local now = now_ms()
local out = {}
lease_jobs(out, worker, epoch, tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), now,
  per_host())
redis.call('HSET', wk, 'seen', now, 'lreq', ARGV[6], 'lrep', cmsgpack.pack(out))
return out
"""
)

# ARGV: worker, epoch, id, outcome (done|failed|retry), retry_ms, hold_ms (-1: none),
#       policy ('' none given | 'none' | 'txt'), robots text, crawl delay ms (-1: none),
#       n, then n triples (fingerprint, host, entry): the page's links, queued first (also
#       when the lease is gone: they are real links, and queued before the URL can end),
#       then take, budget (-1: none), ttl_ms, request id: lease up to ``take`` jobs to the
#       worker in the same step (the slot the finished job leaves), as LEASE does.
# Returns {1 when applied (or already released) / 0 when the lease is no longer this
# worker's, then 1/0 per link (queued / seen)}, followed when take > 0 by LEASE's reply
# (no jobs when the worker is fenced). With take > 0 the same request sent again gets the
# reply it had.
RELEASE = (
    PRELUDE
    + GUARD
    + r"""
local worker, epoch, id, outcome = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local retry_ms, hold_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local pol, rtxt, cdelay = ARGV[7], ARGV[8], tonumber(ARGV[9])
local nlinks = tonumber(ARGV[10])
local at = 11 + nlinks * 3
local take = tonumber(ARGV[at])
local wk = P .. 'w:' .. worker
local w = {}
if take > 0 then
  w = redis.call('HMGET', wk, 'epoch', 'lreq', 'lrep')
  if w[1] == epoch and w[2] == ARGV[at + 3] then return cmsgpack.unpack(w[3]) end
end
local new, added = admit(11, nlinks)
local changed = added > 0  -- something waiters care about: poke once below

-- Returns 1 when applied (or already released), 0 when the lease is not this worker's.
local function release_lease()
  local rec = redis.call('HGET', LEASES, id)
  if not rec then return 0 end
  local w, e, host, released, entry = parse_lease(rec)
  if w ~= worker or e ~= epoch then return 0 end
  if released == '1' then return 1 end
  local now = now_ms()
  local limit = per_host()
  local hk = P .. 'h:' .. host
  redis.call('HINCRBY', hk, 'inflight', -1)
  if hold_ms >= 0 then
    local nxt = num(redis.call('HGET', hk, 'next'), 0)
    if now + hold_ms > nxt then redis.call('HSET', hk, 'next', now + hold_ms) end
  end
  local _, kind = entry_head(entry)
  if kind == 'r' then
    -- A robots lease ends here: the policy is its whole result (it is never committed).
    drop_lease(id, worker)
    redis.call('HINCRBY', META, 'leased', -1)
    redis.call('HDEL', hk, 'asked')
    if outcome == 'retry' or pol == '' then
      redis.call('HINCRBY', hk, 'rattempt', 1)
      local nxt = num(redis.call('HGET', hk, 'next'), 0)
      if now + retry_ms > nxt then redis.call('HSET', hk, 'next', now + retry_ms) end
    else
      redis.call('HSET', hk, 'pol', pol, 'rtxt', rtxt)
      if cdelay >= 0 then
        redis.call('HSET', hk, 'cdelay', cdelay)
        local default = tonumber(redis.call('HGET', META, 'delay'))
        local delay = num(redis.call('HGET', hk, 'delay'), default)
        if cdelay > delay then redis.call('HSET', hk, 'delay', cdelay) end
      end
    end
  elseif outcome == 'retry' then
    drop_lease(id, worker)
    redis.call('HINCRBY', META, 'leased', -1)
    redis.call('HINCRBY', META, 'queued', 1)
    redis.call('ZADD', DELAYED, now + retry_ms, host .. '\n' .. bump(entry))
    redis.call('HINCRBY', hk, 'dl', 1)
  else
    -- Done or failed: the slot is free now, the lease stays until the writer commits it.
    redis.call('HSET', LEASES, id, w .. '\n' .. e .. '\n' .. host .. '\n1\n' .. entry)
  end
  schedule(host, limit)
  changed = true
  return 1
end

local out = {release_lease()}
if changed then poke() end
for i = 1, #new do out[#out + 1] = new[i] end
if take > 0 then
  if w[1] == epoch then
    local now = now_ms()
    local leased = {}
    lease_jobs(leased, worker, epoch, take, tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]),
      now, per_host())
    for i = 1, #leased do out[#out + 1] = leased[i] end
    redis.call('HSET', wk, 'seen', now, 'lreq', ARGV[at + 3], 'lrep', cmsgpack.pack(out))
  else
    out[#out + 1], out[#out + 2], out[#out + 3] = -1, '0-0', -1
  end
end
return out
"""
)

# ARGV: worker, epoch, token, expected offset, new offset, n, then n job fingerprints whose
# redirect claims (jc:) end with this commit, then pairs (lease id, done|failed).
# Returns {'ok'}, {'dup'} (this very commit was applied before), {'fenced'},
# {'offset', stored offset} or {'lost', lease id} / {'robots', lease id}: refused, nothing done.
COMMIT = (
    PRELUDE
    + GUARD
    + r"""
local worker, epoch, token, expected, offset = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local wk = P .. 'w:' .. worker
local w = redis.call('HMGET', wk, 'epoch', 'offset', 'token')
if w[1] ~= epoch then return {'fenced'} end
if w[3] == token then return {'dup'} end
local stored = w[2] or '0'
if stored ~= expected then return {'offset', stored} end
local nclaims = tonumber(ARGV[6])
local leases = {}
for i = 7 + nclaims, #ARGV, 2 do
  local id = ARGV[i]
  local rec = redis.call('HGET', LEASES, id)
  if not rec then return {'lost', id} end
  local lw, le, host, released, entry = parse_lease(rec)
  if lw ~= worker or le ~= epoch then return {'lost', id} end
  local _, kind = entry_head(entry)
  if kind == 'r' then return {'robots', id} end
  leases[#leases + 1] = {id, host, released, ARGV[i + 1]}
end
local limit = per_host()
local done, failed = 0, 0
for _, l in ipairs(leases) do
  local id, host, released, outcome = l[1], l[2], l[3], l[4]
  local hk = P .. 'h:' .. host
  drop_lease(id, worker)
  if outcome == 'done' then
    done = done + 1
    redis.call('HINCRBY', hk, 'done', 1)
  else
    failed = failed + 1
    redis.call('HINCRBY', hk, 'failed', 1)
  end
  if released ~= '1' then
    redis.call('HINCRBY', hk, 'inflight', -1)
    schedule(host, limit)
  end
end
redis.call('HINCRBY', META, 'leased', 0 - done - failed)
redis.call('HINCRBY', META, 'done', done)
redis.call('HINCRBY', META, 'failed', failed)
redis.call('HSET', wk, 'offset', offset, 'token', token, 'seen', now_ms())
redis.call('HINCRBY', wk, 'done', done)
redis.call('HINCRBY', wk, 'failed', failed)
for i = 7, 6 + nclaims do redis.call('DEL', P .. 'jc:' .. ARGV[i]) end
poke()
return {'ok'}
"""
)

# ARGV: worker, epoch, ttl_ms, lease ids. Extends the worker's live leases; returns the ids
# that are no longer its own.
RENEW = (
    PRELUDE
    + GUARD
    + r"""
local worker, epoch, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local lost = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local rec = redis.call('HGET', LEASES, id)
  local ok = false
  if rec then
    local w, e = parse_lease(rec)
    ok = w == worker and e == epoch
  end
  if ok then redis.call('ZADD', EXPIRY, now + ttl, id) else lost[#lost + 1] = id end
end
redis.call('HSET', P .. 'w:' .. worker, 'seen', now)
return lost
"""
)

# ARGV: host, delay ms. The host's delay between request starts (auto-throttle).
SET_DELAY = (
    PRELUDE
    + GUARD
    + r"""
local host = ARGV[1]
if redis.call('SADD', P .. 'hosts', host) == 1 and redis.call('HGET', META, 'robots') ~= '1' then
  redis.call('HSET', P .. 'h:' .. host, 'pol', 'none')
end
redis.call('HSET', P .. 'h:' .. host, 'delay', ARGV[2])
return 1
"""
)
