"""The Lua script behind `RedisStore`: every bucket of one call, atomically, in one round trip.

Redis runs a script to completion before any other command, so the read-check-write of
all the buckets of a call is atomic across every process and machine that shares the
server. Time is the server's (`TIME`), so replicas whose clocks disagree still agree on
every bucket. Redis 5 or later: a script that reads `TIME` and then writes needs effects
replication (the default from 5, the only mode from 7), which sends replicas and the AOF
the `SET`s and `DEL`s the script made, never the script itself.

Call: `EVALSHA sha n key_1 .. key_n mode offset_us (interval limit capacity cost) * n`

- `mode`: `take` (all or nothing), `check` (the verdict of `take`, writing nothing) or
  `refund` (give each cost back, never above burst).
- `offset_us`: whole microseconds added to the server's `TIME`; always 0 outside tests
  (the test-only `_time_offset` hook of RedisStore moves time forward without sleeping).
- per key, as `BucketSpec` defines them: `interval` (seconds per token), `limit`
  (`_limit`: capacity plus the slack that absorbs float rounding), `capacity` (seconds from
  empty to full), `cost` (tokens, > 0).

A stored bucket is the string `"<at> <debt>"`: `at` is the server time of the write in
whole microseconds (exact in a double until the year 2255), `debt` the seconds the bucket
then needed to be full again (`full_at - at`, GCRA's theoretical arrival time taken
relative to the write). The debt now is `debt - (now - at) / 1e6`; <= 0 means full. Keeping
times relative keeps the arithmetic as exact as the memory store's small monotonic clock:
an absolute epoch time near 1.7e9 s would round every write to 2.4e-7 s. A key is written
with `PX` = the debt in ms, rounded up, plus 1, so it expires just after its bucket is
full again; a missing key is a full bucket. A refund that brings a bucket to full deletes
its key.

Reply: `0` when every bucket had room (and, for `take`, each was charged), or
`{i, retry_after}`: `i` (1-based) the first key without room, `retry_after` (a string, since
Redis truncates Lua numbers to integers) the seconds until every bucket of the call has
room. A key named twice is charged the sum of its costs, as in `MemoryStore._plan`.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SCRIPT"]

SCRIPT: Final = """
-- policylayer_core RedisStore: take / check / refund token buckets (see _redis_lua.py)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[2])
local mode = ARGV[1]

local function debt_of(value)
  local at, debt = string.match(value, '^(%-?%d+) (%S+)$')
  return tonumber(debt) - (now - tonumber(at)) / 1000000
end

local function store(key, debt)
  redis.call('SET', key, string.format('%.0f %.17g', now, debt),
             'PX', math.ceil(debt * 1000) + 1)
end

if mode == 'refund' then
  for i = 1, #KEYS do
    local a = 2 + 4 * (i - 1)
    local value = redis.call('GET', KEYS[i])
    if value then  -- a missing bucket is full: nothing to give back
      local back = debt_of(value) - tonumber(ARGV[a + 4]) * tonumber(ARGV[a + 1])
      if back <= tonumber(ARGV[a + 2]) - tonumber(ARGV[a + 3]) then
        redis.call('DEL', KEYS[i])  -- full again, within the slack
      else
        store(KEYS[i], back)
      end
    end
  end
  return 0
end

local planned = {}
local first = 0
local longest = 0
for i = 1, #KEYS do
  local a = 2 + 4 * (i - 1)
  local key = KEYS[i]
  local debt = planned[key]
  if debt == nil then
    local value = redis.call('GET', key)
    debt = value and debt_of(value) or 0
    if debt < 0 then debt = 0 end
  end
  debt = debt + tonumber(ARGV[a + 4]) * tonumber(ARGV[a + 1])
  planned[key] = debt
  if debt > tonumber(ARGV[a + 2]) then
    local wait = debt - tonumber(ARGV[a + 3])
    if wait > longest then longest = wait end
    if first == 0 then first = i end
  end
end
if first > 0 then
  return {first, string.format('%.17g', longest)}
end
if mode == 'take' then
  for key, debt in pairs(planned) do
    store(key, debt)
  end
end
return 0
"""
