-- COMMIT: durably finish leases whose records a worker has written: all or nothing.
--
-- args (built by commit() in shoal/state/_redis_lua.py):
--   [1]     worker            the worker's id
--   [2]     epoch             its epoch
--   [3]     token             made from the commit's content: the same commit sent again
--                             is recognised
--   [4]     expected_offset   the worker's output offset at its last commit
--   [5]     new_offset        its output offset now
--   [6]     n                 how many claims follow
--   [7 ...] claims            n job fingerprints whose redirect claims (jc:) end here
--   [7 + n]  t                how many targets follow
--   [8 + n ...] targets       t pairs (signed fingerprint, entry): redirect targets the
--                             jobs fetched in place, kept as visits (if none is) so that
--                             a recrawl revisits them on their own too
--   [8 + n + 2t]  m           how many change counts follow
--   [9 + n + 2t ...] changes  m pairs (change, count) of a recrawl run: added to the
--                             current run's ('P changes' '<run> <change>'): the run the
--                             leases belong to, CFG.run, which LEASE told the worker
--   [9 + n + 2t + 2m ...] finished groups of 11: lease id, done | failed, the URL's signed
--                             fingerprint, its status ('': none), then its fetch's note
--                             for its visit (visits.lua): keep ('0', '1': a 304, '-': no
--                             note), etag, last-modified, sha256, sha1, final url ('': the
--                             URL), fetched us (wall clock)
-- Returns {'ok'}, {'dup'} (this very commit was applied before), {'fenced'},
-- {'offset', stored offset} or {'lost', lease id} / {'robots', lease id}: refused, nothing
-- done.
register('commit', function(args)
  local worker, epoch, token, expected, offset = args[1], args[2], args[3], args[4], args[5]
  local wk = P .. 'w:' .. worker
  local w = redis.call('HMGET', wk, 'epoch', 'offset', 'token')
  if w[1] ~= epoch then return {'fenced'} end
  if w[3] == token then return {'dup'} end
  local stored = w[2] or '0'
  if stored ~= expected then return {'offset', stored} end
  local nclaims = tonumber(args[6])
  local ntargets = tonumber(args[7 + nclaims])
  local at = 8 + nclaims + 2 * ntargets  -- the change counts
  local nchanges = tonumber(args[at])
  local ids, outcomes, items = {}, {}, {}
  for i = at + 1 + 2 * nchanges, #args, 11 do
    ids[#ids + 1] = args[i]
    outcomes[#outcomes + 1] = args[i + 1]
    items[#items + 1] = i
  end
  -- Every lease is checked before anything changes: all or nothing.
  local recs = {}
  for i = 1, #ids, 400 do
    local got = redis.call('HMGET', LEASES, unpack(ids, i, math.min(i + 399, #ids)))
    for j = 1, #got do recs[#recs + 1] = got[j] end
  end
  local hosts = {}  -- host -> {done, failed, unreleased}
  local entries = {}
  for i, id in ipairs(ids) do
    local rec = recs[i]
    if not rec then return {'lost', id} end
    local lw, le, host, released, entry = parse_lease(rec)
    if lw ~= worker or le ~= epoch then return {'lost', id} end
    local _, kind = entry_head(entry)
    if kind == 'r' then return {'robots', id} end
    entries[i] = string.gsub(entry, '^%d+', '1', 1)
    local h = hosts[host]
    if not h then
      h = {0, 0, 0}
      hosts[host] = h
    end
    if outcomes[i] == 'done' then h[1] = h[1] + 1 else h[2] = h[2] + 1 end
    if released ~= '1' then h[3] = h[3] + 1 end
  end
  local done, failed = 0, 0
  for host, h in pairs(hosts) do
    local hk = P .. 'h:' .. host
    done, failed = done + h[1], failed + h[2]
    if h[1] > 0 then redis.call('HINCRBY', hk, 'done', h[1]) end
    if h[2] > 0 then redis.call('HINCRBY', hk, 'failed', h[2]) end
    if h[3] > 0 then
      redis.call('HINCRBY', hk, 'inflight', -h[3])
      schedule(host)
    end
  end
  if #ids > 0 then
    call_chunked('HDEL', LEASES, ids, 400)
    call_chunked('ZREM', EXPIRY, ids, 400)
    redis.call('HINCRBY', META, 'pending', -#ids)
  end
  if done > 0 then
    redis.call('HINCRBY', META, 'done', done)
    redis.call('HINCRBY', wk, 'done', done)
  end
  if failed > 0 then
    redis.call('HINCRBY', META, 'failed', failed)
    redis.call('HINCRBY', wk, 'failed', failed)
  end
  if #ids > 0 then
    -- Each URL's visit: what the next recrawl run revisits and compares with.
    local run, fps, writes = CFG.run, {}, {}
    for j, i in ipairs(items) do fps[j] = args[i + 2] end
    local olds = {}
    if fps[1] == '' then items, fps = {}, {} end  -- a caller that keeps no visits (tests)
    for i = 1, #fps, 400 do
      local got = redis.call('HMGET', P .. 'v', unpack(fps, i, math.min(i + 399, #fps)))
      for j = 1, #got do olds[#olds + 1] = got[j] end
    end
    for j, i in ipairs(items) do
      local old = nil
      if olds[j] then old = parse_visit(olds[j]) end
      local x = noted(old, entries[j], run, args[i + 3], {keep = args[i + 4],
        etag = args[i + 5], lm = args[i + 6], sha = args[i + 7], sha1 = args[i + 8],
        final = args[i + 9], fetched = args[i + 10]})
      writes[#writes + 1] = fps[j]
      writes[#writes + 1] = pack_visit(x)
    end
    if #writes > 0 then call_chunked('HSET', P .. 'v', writes, 400) end
    for i = at + 1, at + 2 * nchanges, 2 do
      redis.call('HINCRBY', P .. 'changes', int(run) .. ' ' .. args[i], args[i + 1])
    end
    for i = 8 + nclaims, at - 1, 2 do
      redis.call('HSETNX', P .. 'v', args[i], pack_visit(noted(nil, args[i + 1], run, '',
        {keep = '-'})))
    end
  end
  redis.call('HSET', wk, 'offset', offset, 'token', token, 'seen', now_ms())
  for i = 7, 6 + nclaims do redis.call('DEL', P .. 'jc:' .. args[i]) end
  poke()
  return {'ok'}
end)
