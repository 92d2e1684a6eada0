-- LEASE: give a worker up to n jobs that may start now.
--
-- args (built by lease() in shoal/state/_redis_lua.py; -1 is its "none"):
--   [1] worker    the worker's id
--   [2] epoch     its epoch (from REGISTER): another one is fenced
--   [3] n         jobs wanted
--   [4] budget    first tries of pages allowed among them (-1: no limit)
--   [5] ttl_ms    how long each lease lasts without a RENEW
--   [6] request   the request's id: the same request sent again (its reply lost with the
--                 connection) gets the same reply, not new leases
-- Returns {ready_in_ms (-1: nothing waits on a clock), last event id, ms until the first
-- lease expiry (-1: none), the crawl's run (a recrawl's: its jobs are that run's), id,
-- host, entry, ...}, or {'fenced'} when the worker was
-- registered again by another process.
register('lease', function(args)
  local worker, epoch = args[1], args[2]
  local wk = P .. 'w:' .. worker
  local current, replay = lease_request(wk, epoch, args[6])
  if current ~= epoch then return {'fenced'} end
  if replay then return replay end
  local now = now_ms()
  local out = {}
  lease_jobs(out, worker, epoch, tonumber(args[3]), tonumber(args[4]), tonumber(args[5]), now)
  remember_reply(wk, now, args[6], out)
  return out
end)
