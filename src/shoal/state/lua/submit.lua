-- args: n, then n triples (fingerprint, host, entry). Returns 1/0 per URL (queued / seen).
register('submit', function(args)
  local new, added = admit(args, 2, tonumber(args[1]))
  if added > 0 then poke() end
  return new
end)
