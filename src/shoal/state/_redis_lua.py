"""The Redis functions behind :class:`~shoal.state.RedisCrawlState`: one library.

Every change to a crawl's shared state is one of these functions, so each is atomic: no
other client sees a half-done step, and a worker killed between two calls leaves the state
whole. The key layout and what each step guarantees are described in ``_redis.py``; here
are only the texts. :data:`LIBRARY` is ``PRELUDE`` (``_redis_prelude.py``: the shared Lua,
defined once when Redis loads the library rather than on every call as a script's would be)
and one function per step, each starting with ``GUARD`` (``BEGIN`` for INIT).

``KEYS[1]`` is the crawl's prefix ``shoal:{<crawl id>}:``; functions build the other key
names from it. They all share its hash tag, hence one hash slot (what Redis Cluster needs of
the keys one call touches).
"""

from __future__ import annotations

from ._redis_batch import Library
from ._redis_prelude import BEGIN, GUARD, PRELUDE

__all__ = [
    "LIBRARY",
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


# ARGV: version, identity, per_host, delay_ms, robots (1/0), bucket target.
# Creates the crawl's meta hash unless it exists; returns what is stored.
INIT = (
    BEGIN
    + r"""
if redis.call('EXISTS', META) == 0 then
  redis.call('HSET', META, 'version', ARGV[1], 'identity', ARGV[2], 'per_host', ARGV[3],
    'delay', ARGV[4], 'robots', ARGV[5], 'st', ARGV[6], 'sl', 0, 'ss', 0, 'sn', 0,
    'pending', 0, 'done', 0, 'failed', 0, 'lseq', 0, 'created', now_ms())
  return {'created'}
end
local m = redis.call('HMGET', META, 'version', 'identity', 'per_host', 'delay', 'robots')
return {'exists', m[1] or '', m[2] or '', m[3] or '', m[4] or '', m[5] or ''}
"""
)

# ARGV: worker. A new epoch for the worker; every lease of an older epoch comes back.
# Returns {epoch, committed offset, leases reclaimed}.
REGISTER = (
    GUARD
    + r"""
local worker = ARGV[1]
local wk = P .. 'w:' .. worker
redis.call('SADD', P .. 'workers', worker)
local epoch = redis.call('HINCRBY', wk, 'epoch', 1)
-- Leases are few (workers x concurrency, plus pages awaiting their commit): read them all
-- here, on the rare restart, rather than keep a set per worker on every lease.
local back = 0
local all = redis.call('HGETALL', LEASES)
for i = 1, #all, 2 do
  if string.sub(all[i + 1], 1, #worker + 1) == worker .. '\n' then
    back = back + reclaim(all[i], all[i + 1])
  end
end
redis.call('HSET', wk, 'seen', now_ms())
if back > 0 then poke() end
return {epoch, redis.call('HGET', wk, 'offset') or '0', back}
"""
)

# ARGV: n, then n triples (fingerprint, host, entry). Returns 1/0 per URL (queued / seen).
SUBMIT = (
    GUARD
    + r"""
local new, added = admit(ARGV, 2, tonumber(ARGV[1]))
if added > 0 then poke() end
return new
"""
)

# ARGV: fingerprints. Marks them seen without queueing; returns 1/0 per fingerprint.
CLAIM = (
    GUARD
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
    GUARD
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
    GUARD
    + r"""
local worker, epoch = ARGV[1], ARGV[2]
local wk = P .. 'w:' .. worker
local current, replay = lease_request(wk, epoch, ARGV[6])
if current ~= epoch then return {'fenced'} end
if replay then return replay end
local now = now_ms()
local out = {}
lease_jobs(out, worker, epoch, tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), now)
remember_reply(wk, now, ARGV[6], out)
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
    GUARD
    + r"""
local worker, epoch, id, outcome = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local retry_ms, hold_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local pol, rtxt, cdelay = ARGV[7], ARGV[8], tonumber(ARGV[9])
local nlinks = tonumber(ARGV[10])
local at = 11 + nlinks * 3
local take = tonumber(ARGV[at])
local wk = P .. 'w:' .. worker
local current = nil
if take > 0 then
  local replay
  current, replay = lease_request(wk, epoch, ARGV[at + 3])
  if replay then return replay end
end
local new, added = admit(ARGV, 11, nlinks)
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
  local moved = inflight == CFG.limit - 1
  if hold_ms >= 0 then
    hold_until(hk, now + hold_ms)
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
    lease_jobs(leased, worker, epoch, take, tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), now)
    for i = 1, #leased do out[#out + 1] = leased[i] end
    remember_reply(wk, now, ARGV[at + 3], out)
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
    GUARD
    + r"""
local worker, epoch, token, expected, offset = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local wk = P .. 'w:' .. worker
local w = redis.call('HMGET', wk, 'epoch', 'offset', 'token')
if w[1] ~= epoch then return {'fenced'} end
if w[3] == token then return {'dup'} end
local stored = w[2] or '0'
if stored ~= expected then return {'offset', stored} end
local nclaims = tonumber(ARGV[6])
local ids, outcomes = {}, {}
for i = 7 + nclaims, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
  outcomes[#outcomes + 1] = ARGV[i + 1]
end
-- Every lease is checked before anything changes: all or nothing.
local recs = {}
for i = 1, #ids, 400 do
  local got = redis.call('HMGET', LEASES, unpack(ids, i, math.min(i + 399, #ids)))
  for j = 1, #got do recs[#recs + 1] = got[j] end
end
local hosts = {}  -- host -> {done, failed, unreleased}
for i, id in ipairs(ids) do
  local rec = recs[i]
  if not rec then return {'lost', id} end
  local lw, le, host, released, entry = parse_lease(rec)
  if lw ~= worker or le ~= epoch then return {'lost', id} end
  local _, kind = entry_head(entry)
  if kind == 'r' then return {'robots', id} end
  local h = hosts[host]
  if not h then
    h = {0, 0, 0}
    hosts[host] = h
  end
  if outcomes[i] == 'done' then h[1] = h[1] + 1 else h[2] = h[2] + 1 end
  if released ~= '1' then h[3] = h[3] + 1 end
end
local done, failed = 0, 0
for host, h in pairs(hosts) do
  local hk = P .. 'h:' .. host
  done, failed = done + h[1], failed + h[2]
  if h[1] > 0 then redis.call('HINCRBY', hk, 'done', h[1]) end
  if h[2] > 0 then redis.call('HINCRBY', hk, 'failed', h[2]) end
  if h[3] > 0 then
    redis.call('HINCRBY', hk, 'inflight', -h[3])
    schedule(host)
  end
end
if #ids > 0 then
  call_chunked('HDEL', LEASES, ids, 400)
  call_chunked('ZREM', EXPIRY, ids, 400)
  redis.call('HINCRBY', META, 'pending', -#ids)
end
if done > 0 then
  redis.call('HINCRBY', META, 'done', done)
  redis.call('HINCRBY', wk, 'done', done)
end
if failed > 0 then
  redis.call('HINCRBY', META, 'failed', failed)
  redis.call('HINCRBY', wk, 'failed', failed)
end
redis.call('HSET', wk, 'offset', offset, 'token', token, 'seen', now_ms())
for i = 7, 6 + nclaims do redis.call('DEL', P .. 'jc:' .. ARGV[i]) end
poke()
return {'ok'}
"""
)

# ARGV: worker, epoch, ttl_ms, lease ids. Extends the worker's live leases; returns the ids
# that are no longer its own.
RENEW = (
    GUARD
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
if #lost < #ARGV - 3 then due_by(now + ttl) end
redis.call('HSET', P .. 'w:' .. worker, 'seen', now)
return lost
"""
)

# ARGV: host, delay ms. The host's delay between request starts (auto-throttle).
SET_DELAY = (
    GUARD
    + r"""
local host = ARGV[1]
if redis.call('SADD', P .. 'hosts', host) == 1 and not CFG.robots then
  redis.call('HSET', P .. 'h:' .. host, 'pol', 'none')
end
redis.call('HSET', P .. 'h:' .. host, 'delay', ARGV[2])
return 1
"""
)

LIBRARY = Library(
    "shoal",
    PRELUDE,
    {
        "INIT": INIT,
        "REGISTER": REGISTER,
        "SUBMIT": SUBMIT,
        "CLAIM": CLAIM,
        "CLAIM_FOR": CLAIM_FOR,
        "LEASE": LEASE,
        "RELEASE": RELEASE,
        "COMMIT": COMMIT,
        "RENEW": RENEW,
        "SET_DELAY": SET_DELAY,
    },
)
