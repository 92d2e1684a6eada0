-- Visits: what the last fetch of each URL left for the next recrawl run (#19), in one hash
-- 'P v' (signed fingerprint -> visit), and the recrawl's run counter in 'P meta' gen.
--
-- A visit is '<run> <status> <fetched us> <captured us> <len etag> <len last-modified>
-- <len sha256> <len sha1> <len final url> <etag><last-modified><sha256><sha1><final url>
-- <entry>': numbers in decimal (-1: none), then the strings back to back (length 0: none),
-- then the URL's queue entry (attempt 1) to the end. Times are wall-clock microseconds (a
-- WARC revisit names its capture's date to the microsecond), exact in a double until 2255.
-- run: the last run that queued or committed the URL (a run queues each URL once). The
-- digests are raw bytes.

local VISIT = '^(%d+) (%-?%d+) (%-?%d+) (%-?%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (.*)$'

local function parse_visit(v)
  local run, status, fetched, captured, le, ll, l2, l1, lf, rest = string.match(v, VISIT)
  local at, out = 1, {run = tonumber(run), status = status, fetched = fetched,
    captured = captured}
  for _, f in ipairs({{'etag', le}, {'lm', ll}, {'sha', l2}, {'sha1', l1}, {'final', lf}}) do
    local n = tonumber(f[2])
    out[f[1]] = string.sub(rest, at, at + n - 1)
    at = at + n
  end
  out.entry = string.sub(rest, at)
  return out
end

local function pack_visit(x)
  return table.concat({int(x.run), x.status, x.fetched, x.captured, #x.etag, #x.lm, #x.sha,
    #x.sha1, #x.final}, ' ') .. ' ' .. x.etag .. x.lm .. x.sha .. x.sha1 .. x.final .. x.entry
end

-- The crawl's run as records name it: 1 until the first recrawl (read by load_meta).
local function generation()
  return CFG.gen
end

-- A fetch's note applied to the URL's visit (nil: none yet), as StateStore.commit does for
-- a state file: a 304 (keep = '1') keeps validators it does not carry; a body digest
-- replaces the stored one (a new capture, at fetched); a commit without a note (keep = '-')
-- only keeps the URL known. n: the note's fields as commit.lua reads them.
local function noted(old, entry, run, status, n)
  local x = old or {run = 0, status = '-1', fetched = '-1', captured = '-1', etag = '',
    lm = '', sha = '', sha1 = '', final = ''}
  x.entry = entry
  if x.run < run then x.run = run end
  if status ~= '' then x.status = status end
  if n.keep == '-' then return x end
  if n.keep == '1' then
    if n.etag ~= '' then x.etag = n.etag end
    if n.lm ~= '' then x.lm = n.lm end
  else
    x.etag, x.lm = n.etag, n.lm
  end
  if n.sha ~= '' then
    if x.sha ~= n.sha then x.captured = n.fetched end
    x.sha = n.sha
  end
  if n.sha1 ~= '' then x.sha1 = n.sha1 end
  x.final, x.fetched = n.final, n.fetched
  return x
end
