-- The crawl's Redis function library, part 1 of its files (the order is LIBRARY_FILES in
-- shoal/state/_redis_lua.py): the key layout, what one call sets up, and register().
--
-- Redis loads the files as one chunk, in that order, after two lines shoal writes itself
-- (the only text not in these files): '#!lua name=<library>' and 'local LIBRARY =
-- '<library>''; <library> is 'shoal_' and a digest of these files, so two shoal versions on
-- one Redis each call their own. A local of one file is seen by the files after it.
-- Lint: 'python3 dev.py lint' runs luacheck over the library as Redis loads it.
--
-- Key layout (P = 'shoal:{<crawl id>}:', KEYS[1] of every call; one hash tag, so one
-- Cluster slot):
--
--   P meta         HASH   version, identity (JSON), per_host, delay (ms), robots (1/0);
--                         counters pending (queued + leased), done, failed; lseq (lease
--                         ids); due (ms: nothing in le or delayed falls due before it);
--                         seen set shape: sl (level), ss (split), st (target), sn (count);
--                         wt (ms: until then a worker may wait on events); tclock (ms:
--                         tests only, the crawl's clock held still, as a MemoryFrontier's
--                         clock= is; absent in a real crawl: the server's TIME); hp (1:
--                         the crawl has host patterns in P paces)
--   P s:<b>        SET    seen fingerprints of bucket b, as signed 64-bit ints: an intset
--   P hosts        SET    every host ('scheme://host[:port]') ever queued
--   P paces        HASH   host pattern ('name' or 'name:port') -> '<per_host> <delay ms>'
--                         (-1: the crawl's), set by INIT; copied to a host's hash when
--                         the host is first seen (new_host)
--   P parked       SET    hosts not asked again in this crawl (a Retry-After past MAX_HOLD)
--   P h:<host>     HASH   inflight, next (ms: earliest next start), delay (ms, if not the
--                         crawl's), limit (jobs in flight at most, if not the crawl's),
--                         pol (none|txt; absent: robots.txt unknown), rtxt, cdelay,
--                         asked (1 while its robots job is out), rattempt, dl, done, failed
--   P q:<host>     LIST   the host's queued entries, front first
--   P ready        ZSET   host -> next start (ms), for hosts that can give out a job
--   P delayed      ZSET   '<host>\n<entry>' -> when a retry may go back to its queue (ms)
--   P l            HASH   lease id -> '<worker>\n<epoch>\n<host>\n<released>\n<entry>'
--   P le           ZSET   lease id -> expiry (ms)
--   P events       STREAM one entry per change a waiting worker may care about (short)
--   P workers      SET    worker ids
--   P w:<worker>   HASH   epoch, offset, token (last commit), seen (ms), done, failed,
--                         lreq/lrep (last lease request and its reply, for a resend)
--   P jc:<fp>      SET    redirect targets the job of URL fingerprint fp claimed (until
--                         the job commits; a week at most)
--   P v            HASH   fingerprint -> the URL's visit: its last fetch (status, validators,
--                         digests, times) and queue entry, for recrawls (visits.lua)
--   P changes      HASH   '<run> <change>' -> URLs of that recrawl run with that change
--   P rpq          SET    while a recrawl run is filled: URLs its parked hosts hold queued
--                         (recrawl.lua), queued already, so not queued again
-- meta also holds gen (the run records name: absent = 1) and, while a recrawl run is
-- being filled, rscan, rgen, rcut, rq, rmin (recrawl.lua).
--
-- An entry is '<attempt> <kind p|r|s> <depth> <url bytes> <url><referrer>': one compact
-- string per queued URL in a list, about its URL and referrer in size.
--
-- What a call costs Redis is mostly how many redis.call it makes (each is a command
-- dispatch, and each write is also appended to the AOF), so the functions count them: the
-- crawl's settings and seen-set shape are read once per call (load_meta), the clock once
-- (now_ms), a host is rescheduled only when its readiness can have changed, expired leases
-- and due retries are looked for only once 'due' has passed, and the counters are the few
-- that cannot be read off a key's length (the leased count is HLEN l).
--
-- Lua in Redis has only doubles for numbers, exact up to 2^53. So fingerprints (signed
-- 64-bit) stay strings from end to end and are never turned into Lua numbers: low_bits reads
-- the bucket number off the decimal digits. Times are integer milliseconds of the server's
-- clock (TIME; allowed since Redis replicates a function's effects, the only mode on 7.0),
-- about 1.8e12: exact in a double, and tostring prints them without an exponent.

-- A library's functions are defined once, when it is loaded; what belongs to one call (the
-- crawl's keys, the clock, its settings) is set by begin() at the start of every call.
-- Redis runs one function at a time, so these are the current call's.
local P, META, READY, DELAYED, LEASES, EXPIRY, EVENTS
local NOW, CFG, POKED

local function begin(keys)
  P = keys[1]
  META, READY, DELAYED = P .. 'meta', P .. 'ready', P .. 'delayed'
  LEASES, EXPIRY, EVENTS = P .. 'l', P .. 'le', P .. 'events'
  NOW, CFG, POKED = nil, nil, nil
end

local function num(v, default)
  if v then return tonumber(v) end
  return default
end

-- An integer as a command argument. Lua would print a number with '%.14g', which costs
-- libc many times what '%d' does, and a call passes several (times, counts) every page.
-- (Only redis.* exists while the library loads: library functions look the rest up when
-- they run.)
local function int(n)
  return string.format('%d', n)
end

-- The server's clock, read once per call: a call runs at one instant.
local function now_ms()
  if not NOW and CFG and CFG.clock then NOW = CFG.clock end
  if not NOW then
    local t = redis.call('TIME')
    NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return NOW
end

-- The crawl's settings and the seen set's shape, read once per call. nil when the crawl
-- has no state (see register).
local function load_meta()
  local m = redis.call('HMGET', META, 'version', 'per_host', 'delay', 'robots', 'sl', 'ss',
    'st', 'sn', 'due', 'wt', 'tclock', 'hp', 'gen', 'rscan', 'rgen')
  if not m[1] then return nil end
  -- run: the run a job leased (or committed) now belongs to. A run is begun only when the
  -- one before has no work left, so from a fill's first queued URL on (past its 'd' check
  -- that something is due, recrawl.lua) every job is the new run's.
  local run = num(m[13], 1)
  if m[14] and string.sub(m[14], 1, 1) ~= 'd' then run = tonumber(m[15]) end
  CFG = {limit = tonumber(m[2]), delay = tonumber(m[3]), robots = m[4] == '1',
    level = tonumber(m[5]), split = tonumber(m[6]), target = tonumber(m[7]),
    count = tonumber(m[8]), due = num(m[9], nil), waiters = num(m[10], 0),
    clock = num(m[11], nil), paces = m[12] == '1', gen = num(m[13], 1), run = run}
  return CFG
end

-- Calls cmd key with the items of list, at most per of them a call (Lua's unpack is
-- bounded by its stack).
local function call_chunked(cmd, key, list, per)
  for i = 1, #list, per do
    redis.call(cmd, key, unpack(list, i, math.min(i + per - 1, #list)))
  end
end


-- Registers fn(args) as the function '<library>_<name>', called with KEYS[1] the crawl's
-- prefix and ARGV as args. It runs only on a crawl whose keys exist: one whose keys vanished
-- (deleted, evicted, or a Redis restarted without its data) is an error, never a fresh
-- empty crawl. begin() and load_meta() set up the call (its keys, CFG) first.
local function register(name, fn)
  redis.register_function(LIBRARY .. '_' .. name, function(keys, args)
    begin(keys)
    if not load_meta() then
      return redis.error_reply('SHOAL_GONE the crawl has no state in Redis')
    end
    return fn(args)
  end)
end

-- The same for INIT alone, which creates the crawl's keys: no guard.
local function register_init(name, fn)
  redis.register_function(LIBRARY .. '_' .. name, function(keys, args)
    begin(keys)
    return fn(args)
  end)
end
