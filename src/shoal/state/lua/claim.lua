-- CLAIM: mark fingerprints seen without queueing anything.
--
-- args (built by claim() in shoal/state/_redis_lua.py):
--   [1 ...]  fingerprints
-- Returns 1/0 per fingerprint (new / seen).
register('claim', function(args)
  local new = see(args)
  return new
end)
