-- args: fingerprints. Marks them seen without queueing; returns 1/0 per fingerprint.
register('claim', function(args)
  local new = see(args)
  return new
end)
