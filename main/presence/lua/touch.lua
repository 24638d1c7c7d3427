-- A batch of heartbeats. KEYS: expiry, info, log, agents. ARGV: seconds,
-- channel, then for each heartbeat: member, employee (0|1), order id. A
-- heartbeat within the grace continues the presence; a later one is an
-- arrival. An employee's heartbeat also counts them as an agent online.
-- Answers the arrivals.
prune(PRUNE_BATCH)
local ttl = tonumber(ARGV[1])
local arrivals = 0
local agents = false
for i = 3, #ARGV, 3 do
  local member = ARGV[i]
  local old = redis.call('ZSCORE', KEYS[1], member)
  redis.call('ZADD', KEYS[1], now + ttl, member)
  if ARGV[i + 1] == '1' then
    redis.call('ZADD', KEYS[4], now + ttl, cjson.decode(member)[2])
    agents = true
  end
  if not old or tonumber(old) <= now - GRACE then
    local info = ARGV[i + 1] .. ':' .. now_str
    redis.call('HSET', KEYS[2], member, info)
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', LOG_ENTRIES, '*', 'a', info .. ' ' .. member)
    redis.call('PUBLISH', ARGV[2], ARGV[i + 2])
    arrivals = arrivals + 1
  end
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl + GRACE + 2) end
if agents then redis.call('EXPIRE', KEYS[4], ttl + GRACE + 2) end
return arrivals
