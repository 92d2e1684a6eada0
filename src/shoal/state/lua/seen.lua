-- (fingerprint as an unsigned 64-bit number) mod m, for m a power of two below 2^40, read off
-- the signed decimal string digit by digit so that no value above 2^53 is ever formed.
-- For a negative s, unsigned = 2^64 - |s|, and 2^64 mod m = 0.
local function low_bits(s, m)
  local neg = string.byte(s, 1) == 45
  local r = 0
  for i = (neg and 2 or 1), #s do
    r = (r * 10 + string.byte(s, i) - 48) % m
  end
  if neg then r = (m - r) % m end
  return r
end

-- Linear hashing over bucket sets: 2^level + split buckets. Bucket b < split has been split
-- at this level and is addressed with one more bit.
local function bucket_of(fp, level, split)
  local b = low_bits(fp, 2 ^ (level + 1))
  local lo = b % (2 ^ level)
  if lo < split then return b end
  return lo
end

-- Split one bucket when the average bucket holds more than the target. Buckets not yet split
-- at this level hold about twice the average, so the target is kept near 40% of the
-- server's set-max-intset-entries: every bucket stays a compact intset (8 bytes a member).
local function maybe_split()
  local level, split = CFG.level, CFG.split
  if CFG.count <= (2 ^ level + split) * CFG.target then return end
  local old = P .. 's:' .. split
  local members = redis.call('SMEMBERS', old)
  local stay, move = {}, {}
  local wide = 2 ^ (level + 1)
  for _, fp in ipairs(members) do
    if low_bits(fp, wide) == split then stay[#stay + 1] = fp else move[#move + 1] = fp end
  end
  -- Re-created rather than trimmed: a bucket that once outgrew the intset limit became a
  -- hash table, and only a new key is an intset again.
  redis.call('DEL', old)
  call_chunked('SADD', old, stay, 500)
  call_chunked('SADD', P .. 's:' .. (split + 2 ^ level), move, 500)
  split = split + 1
  if split == 2 ^ level then
    level = level + 1
    split = 0
  end
  CFG.level, CFG.split = level, split
  redis.call('HSET', META, 'sl', level, 'ss', split)
end

-- Add fingerprints to the seen set; returns a table of 1 (new) / 0 (seen before), and the
-- number of new ones.
local function see(fps)
  local out, added = {}, 0
  for i, fp in ipairs(fps) do
    local new = redis.call('SADD', P .. 's:' .. int(bucket_of(fp, CFG.level, CFG.split)), fp)
    out[i] = new
    if new == 1 then
      added = added + 1
      CFG.count = CFG.count + 1
      maybe_split()
    end
  end
  if added > 0 then redis.call('HSET', META, 'sn', int(CFG.count)) end
  return out, added
end

