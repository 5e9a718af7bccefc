package redis

import "github.com/redis/rueidis"

// The scripts run atomically in Redis. Publishing is one script so that id
// assignment, storage and PUBLISH happen as one step: Redis runs scripts one
// at a time, so every node's subscription connection receives messages in
// id order, which is what makes "recover everything after mid" exact and lets
// a node drop a second copy of a message by its id alone.
//
// Keys are built inside the scripts from the prefix passed as ARGV[1]; every
// key carries the same hash tag, so on a Redis Cluster they share one slot,
// and each script is given one key of that slot (KEYS[1]) for routing.

// publishScript assigns the next mid and, when the message has receivers,
// stores and publishes it. A channel over its caps (messages, and bytes when
// ARGV[6] is not 0) drops its oldest mids and records the newest of them as
// lost (l:<channel>), so that a client recovering from an older mid learns
// it missed messages; the record lives as long as the dropped message would
// have (or longer, if an older record outlives it). The newest message is
// never dropped: the byte cap is at least the largest payload.
//
// A channel's bytes are the sizes of its stored messages (mid + encoded
// tail), kept per mid in z:<channel> and summed in s:<channel>; every script
// that takes a mid out of h:<channel> takes it out of both, so the sum stays
// exact however the mid leaves (cap, expiry noticed by a reader); both
// live as long as the history they count. With no byte cap none of this is
// kept, and a message stored then counts 0 once the cap is set.
//
//	KEYS[1] start date (10 digits), KEYS[2] counter
//	ARGV[1] key prefix, ARGV[2] now in unix seconds, ARGV[3] floor mid ("" or
//	26 digits), ARGV[4] storage ttl in ms (0: not stored), ARGV[5] history cap
//	per channel, ARGV[6] byte cap per channel (0: none), ARGV[7] the encoded
//	message without its mid, ARGV[8..] the receivers' channel ids in hex.
//
// The floor is the newest mid the calling node has seen. A Redis restored
// from an older snapshot, or emptied, would hand out ids again that clients
// already hold, and their recovery "after mid" would skip the new messages:
// instead the script starts a new epoch above the floor.
var publishScript = rueidis.NewLuaScript(`
local base = ARGV[1]
local start = redis.call('GET', KEYS[1])
if not start then
  start = ARGV[2]
  redis.call('SET', KEYS[1], start)
  redis.call('SET', KEYS[2], 0)
end
local cnt = redis.call('INCR', KEYS[2])
local mid = start .. string.format('%016d', cnt)
if ARGV[3] ~= '' and mid <= ARGV[3] then
  local s = tonumber(ARGV[2])
  local floor = tonumber(string.sub(ARGV[3], 1, 10))
  if s <= floor then s = floor + 1 end
  start = string.format('%010d', s)
  redis.call('SET', KEYS[1], start)
  redis.call('SET', KEYS[2], 1)
  mid = start .. string.format('%016d', 1)
end
if #ARGV < 8 then
  return mid
end
local payload = mid .. ARGV[7]
local size = #payload
local ttl = tonumber(ARGV[4])
local cap = tonumber(ARGV[5])
local bytecap = tonumber(ARGV[6])
if ttl > 0 then
  redis.call('SET', base .. 'm:' .. mid, payload, 'PX', ttl)
end
for i = 8, #ARGV do
  local ch = ARGV[i]
  if ttl > 0 then
    local k = base .. 'h:' .. ch
    local zk = base .. 'z:' .. ch
    local sk = base .. 's:' .. ch
    redis.call('ZADD', k, 0, mid)
    local sum = 0
    if bytecap > 0 then
      redis.call('HSET', zk, mid, size)
      sum = redis.call('INCRBY', sk, size)
    end
    local n = redis.call('ZCARD', k)
    local drop = 0
    local freed = 0
    local gone = nil
    while drop < n - 1 and (n - drop > cap or (bytecap > 0 and sum - freed > bytecap)) do
      gone = redis.call('ZRANGE', k, drop, drop)[1]
      if bytecap > 0 then
        freed = freed + tonumber(redis.call('HGET', zk, gone) or '0')
        redis.call('HDEL', zk, gone)
      end
      drop = drop + 1
    end
    if drop > 0 then
      redis.call('ZREMRANGEBYRANK', k, 0, drop - 1)
      if freed > 0 then
        redis.call('DECRBY', sk, freed)
      end
      local left = redis.call('PTTL', base .. 'm:' .. gone)
      if left > 0 then
        local lk = base .. 'l:' .. ch
        local keep = redis.call('PTTL', lk)
        if keep < left then keep = left end
        redis.call('SET', lk, gone, 'PX', keep)
      end
    end
    local kt = redis.call('PTTL', k)
    if kt < ttl then
      redis.call('PEXPIRE', k, ttl)
      kt = ttl
    end
    if bytecap > 0 and redis.call('PTTL', sk) < kt then
      redis.call('PEXPIRE', zk, kt)
      redis.call('PEXPIRE', sk, kt)
    end
  end
  redis.call('PUBLISH', base .. 'c:' .. ch, payload)
end
return mid
`)

// forgetLua defines forget(base, channel hex, mid): it takes an expired mid
// out of a channel's history and out of the channel's byte count.
const forgetLua = `
local function forget(base, ch, mid)
  redis.call('ZREM', base .. 'h:' .. ch, mid)
  local zk = base .. 'z:' .. ch
  local size = redis.call('HGET', zk, mid)
  if size then
    redis.call('HDEL', zk, mid)
    redis.call('DECRBY', base .. 's:' .. ch, size)
  end
end
`

// forgetScript takes expired mids out of channels' histories.
//
//	ARGV[1] key prefix, then pairs of channel id in hex and mid.
var forgetScript = rueidis.NewLuaScript(forgetLua + `
local base = ARGV[1]
for i = 2, #ARGV - 1, 2 do
  forget(base, ARGV[i], ARGV[i + 1])
end
return 0
`)

// lastIDScript returns the newest mid still stored in any of the channels,
// or "", dropping index entries whose message has expired on the way.
//
//	ARGV[1] key prefix, ARGV[2..] channel ids in hex.
var lastIDScript = rueidis.NewLuaScript(forgetLua + `
local base = ARGV[1]
local best = ''
for i = 2, #ARGV do
  local k = base .. 'h:' .. ARGV[i]
  while true do
    local r = redis.call('ZREVRANGEBYLEX', k, '+', '-', 'LIMIT', 0, 1)
    if #r == 0 then break end
    if redis.call('EXISTS', base .. 'm:' .. r[1]) == 1 then
      if r[1] > best then best = r[1] end
      break
    end
    forget(base, ARGV[i], r[1])
  end
end
return best
`)

// onlineScript sums, per channel, the connection counts of the nodes that
// are alive, and forgets the counts of nodes that are not (crashed without
// saying goodbye).
//
//	ARGV[1] key prefix, ARGV[2] the oldest heartbeat (unix ms) of a live
//	node, ARGV[3..] channel ids in hex. Returns one count per channel.
var onlineScript = rueidis.NewLuaScript(`
local base = ARGV[1]
local live = {}
for _, n in ipairs(redis.call('ZRANGEBYSCORE', base .. 'nodes', ARGV[2], '+inf')) do
  live[n] = true
end
local out = {}
for i = 3, #ARGV do
  local k = base .. 'o:' .. ARGV[i]
  local kv = redis.call('HGETALL', k)
  local sum = 0
  for j = 1, #kv, 2 do
    if live[kv[j]] then
      sum = sum + tonumber(kv[j + 1])
    else
      redis.call('HDEL', k, kv[j])
    end
  end
  out[#out + 1] = sum
end
return out
`)

// detachScript takes one connection of this node off each channel.
//
//	ARGV[1] key prefix, ARGV[2] node id, ARGV[3..] channel ids in hex.
var detachScript = rueidis.NewLuaScript(`
local base = ARGV[1]
for i = 3, #ARGV do
  local k = base .. 'o:' .. ARGV[i]
  if redis.call('HINCRBY', k, ARGV[2], -1) <= 0 then
    redis.call('HDEL', k, ARGV[2])
  end
end
return 1
`)

// attachScript counts one more connection of this node on each channel and
// keeps the count alive for ttl: a node that dies stops refreshing it.
//
//	ARGV[1] key prefix, ARGV[2] node id, ARGV[3] ttl in ms, ARGV[4..]
//	channel ids in hex.
var attachScript = rueidis.NewLuaScript(`
local base = ARGV[1]
for i = 4, #ARGV do
  local k = base .. 'o:' .. ARGV[i]
  redis.call('HINCRBY', k, ARGV[2], 1)
  redis.call('PEXPIRE', k, ARGV[3])
end
return 1
`)

// heartbeatScript marks this node alive and rewrites its connection counts,
// which restores them after Redis lost its data, and keeps them from
// expiring while connections last.
//
//	ARGV[1] key prefix, ARGV[2] node id, ARGV[3] now (unix ms), ARGV[4]
//	ttl in ms, then pairs of channel id in hex and count.
var heartbeatScript = rueidis.NewLuaScript(`
local base = ARGV[1]
redis.call('ZADD', base .. 'nodes', ARGV[3], ARGV[2])
redis.call('ZREMRANGEBYSCORE', base .. 'nodes', '-inf', tonumber(ARGV[3]) - 10 * tonumber(ARGV[4]))
for i = 5, #ARGV, 2 do
  local k = base .. 'o:' .. ARGV[i]
  redis.call('HSET', k, ARGV[2], ARGV[i + 1])
  redis.call('PEXPIRE', k, ARGV[4])
end
return 1
`)
