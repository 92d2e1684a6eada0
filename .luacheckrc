-- luacheck settings for shoal's Redis function library (src/shoal/state/lua/*.lua).
-- Its files are one chunk when Redis loads them, so lint them as that chunk:
--   python3 dev.py lint        (or: python3 tests/lua_lint.py, inside .venv)
-- which assembles the library exactly as shoal loads it and maps each warning back to its
-- file and line. luacheck on a single file reports the locals of the files before it as
-- undefined globals.

-- Redis 7 runs Lua 5.1 (LuaJIT is not used); a function library sees these modules.
std = "lua51"
read_globals = {
  "redis",     -- redis.call, redis.register_function, redis.error_reply, ...
  "cjson",
  "cmsgpack",
  "bit",
  "struct",
}
-- A Redis library may not set globals (Redis refuses), so any global write is a bug:
-- luacheck's default already reports one; KEYS and ARGV are not globals in a function
-- (they are its arguments), so they are not listed.
max_line_length = 100
