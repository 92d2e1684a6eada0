-- args: job fingerprint, url fingerprint, keep_ms. A redirect target fetched in place by
-- the job of that fingerprint: seen by the crawl, and remembered as the job's own, so a
-- redo of the job (a retry, or its lease reclaimed from a dead worker) may claim it again.
-- Returns 1 if the job may fetch it, 0 if another job had it.
register('claim_for', function(args)
  local jc = P .. 'jc:' .. args[1]
  if redis.call('SISMEMBER', jc, args[2]) == 1 then return 1 end
  local new = see({args[2]})
  if new[1] == 1 then
    redis.call('SADD', jc, args[2])
    redis.call('PEXPIRE', jc, tonumber(args[3]))
  end
  return new[1]
end)
