-- args: worker, epoch, n, budget (-1: none), ttl_ms, request id.
-- Returns {ready_in_ms (-1: nothing waits on a clock), last event id, ms until the first
-- lease expiry (-1: none), id, host, entry, ...}
-- or {'fenced'} when the worker was registered again by another process. The same request
-- sent again (its reply was lost with the connection) gets the same reply, not new leases.
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
