-- CLAIM_FOR: a redirect target fetched in place by a job: seen by the crawl, and
-- remembered as the job's own, so a redo of the job (a retry, or its lease reclaimed from a
-- dead worker) may claim it again.
--
-- args (built by claim_for() in shoal/state/_redis_lua.py):
--   [1] job       the job's URL fingerprint
--   [2] url       the target's URL fingerprint
--   [3] keep_ms   how long the claim is kept if the job never commits
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
