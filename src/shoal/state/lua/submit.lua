-- SUBMIT: dedupe URLs and queue the new ones.
--
-- args (built by submit() in shoal/state/_redis_lua.py):
--   [1]      n       how many links follow
--   [2 ...]  links   n triples (fingerprint, host, entry)
-- Returns 1/0 per URL (queued / seen).
register('submit', function(args)
  local new, added = admit(args, 2, tonumber(args[1]))
  if added > 0 then poke() end
  return new
end)
