package redisstate

import "github.com/redis/go-redis/v9"

// publishScript stores a hold extend-only and publishes it, or ends a
// circuit's open hold (a release), in one atomic step.
//
//	KEYS[1] the hold key (the open key for a release)
//	KEYS[2] the namespace's index
//	KEYS[3] the circuit's lease key (deleted by a release)
//	KEYS[4] the namespace's epoch key
//	ARGV[1] TTL in milliseconds; "0" for a release
//	ARGV[2] the value
//	ARGV[3] the channel
//	ARGV[4] the message head "llmt1|SENT|"
//	ARGV[5] a new epoch token, used when the epoch key is missing
//	ARGV[6] the epoch key's TTL in milliseconds
//
// A hold whose key already lives at least as long as ARGV[1] is kept as it
// is and nothing is published (result -PTTL, ≤ 0); otherwise the key is
// SET with PX ARGV[1] (its TTL is relative: no clock of any host is
// compared) and the hold published with its TTL (result: the TTL). The
// index is scored with the expiry on the Redis server's own clock (TIME),
// pruned of the expired, and lives as long as its longest hold. Returns
// {result, epoch token}: the epoch under which the hold was written.
var publishScript = redis.NewScript(`
local e = redis.call('GET', KEYS[4])
if not e then
  e = ARGV[5]
  redis.call('SET', KEYS[4], e)
end
redis.call('PEXPIRE', KEYS[4], ARGV[6])
local ttl = tonumber(ARGV[1])
if ttl <= 0 then
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('ZREM', KEYS[2], KEYS[1])
  redis.call('PUBLISH', ARGV[3], ARGV[4] .. '0|' .. ARGV[2])
  return {0, e}
end
local cur = redis.call('PTTL', KEYS[1])
if cur >= ttl then
  return {-cur, e}
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + ttl, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local ittl = redis.call('PTTL', KEYS[2])
if ittl < ttl then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ttl .. '|' .. ARGV[2])
return {ttl, e}
`)

// backfillScript returns the live holds of a namespace as a flat list
// VALUE1, PTTL1, VALUE2, PTTL2…, at most ARGV[1] of them, after pruning
// the index of the expired and the deleted.
//
//	KEYS[1] the index
//	ARGV[1] the most holds returned
var backfillScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local members = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local out = {}
for _, k in ipairs(members) do
  local v = redis.call('GET', k)
  local p = redis.call('PTTL', k)
  if v and p > 0 then
    out[#out + 1] = v
    out[#out + 1] = p
  else
    redis.call('ZREM', KEYS[1], k)
  end
end
return out
`)

// epochScript returns the namespace's epoch token, creating it from
// ARGV[1] when missing (a new or emptied Redis), and keeps it for ARGV[2]
// milliseconds from now.
//
//	KEYS[1] the epoch key
var epochScript = redis.NewScript(`
local e = redis.call('GET', KEYS[1])
if not e then
  e = ARGV[1]
  redis.call('SET', KEYS[1], e)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return e
`)

// leaseScript grants the lease KEYS[1] to ARGV[1] for ARGV[2] milliseconds
// when no one holds it or ARGV[1] does already (returns -1: a process whose
// probe said nothing asks again, and gets it), else returns how long it is
// still held, in milliseconds.
var leaseScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return -1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return -1
end
local p = redis.call('PTTL', KEYS[1])
if p < 0 then
  p = tonumber(ARGV[2])
end
return p
`)

// reserveScript is the limiter's GCRA with a cost per request, on the
// Redis server's clock (TIME, in microseconds): for each dimension, the
// key's hash field holds its theoretical arrival time (TAT). A request of
// cost c against limit L per window W (µs) moves it to max(TAT, now) +
// c·W/L, and fits when that is at most W past now. When every dimension
// fits, the new TATs are stored (as integers: %.0f, not Lua's 14 digits)
// and the key is kept as long as the furthest one is ahead of now; the
// result is 0. Otherwise nothing is stored and the result is how long
// until every dimension would fit, in microseconds (rounded up).
//
//	KEYS[1] the limiter key, a hash
//	ARGV    per dimension: field, L, W in µs, c (1 to 4 dimensions)
var reserveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #ARGV / 4
local fields = {}
for i = 1, n do
  fields[i] = ARGV[4 * i - 3]
end
local cur = redis.call('HMGET', KEYS[1], unpack(fields))
local wait, ahead = 0, 0
local tats = {}
for i = 1, n do
  local limit = tonumber(ARGV[4 * i - 2])
  local window = tonumber(ARGV[4 * i - 1])
  local cost = tonumber(ARGV[4 * i])
  local tat = tonumber(cur[i]) or now
  if tat < now then
    tat = now
  end
  tat = tat + cost * window / limit
  if tat - window - now > wait then
    wait = tat - window - now
  end
  if tat - now > ahead then
    ahead = tat - now
  end
  tats[i] = tat
end
if wait > 0 then
  return math.ceil(wait)
end
local kv = {}
for i = 1, n do
  kv[2 * i - 1] = fields[i]
  kv[2 * i] = string.format('%.0f', math.ceil(tats[i]))
end
redis.call('HSET', KEYS[1], unpack(kv))
local ms = math.ceil(ahead / 1000) + 1
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('PEXPIRE', KEYS[1], ms)
end
return 0
`)
