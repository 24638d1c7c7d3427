-- Every script begins here: Redis's clock, and prune(limit), which forgets
-- members whose grace has passed too (scores are expiry times) and logs them
-- as gone. The log never outlives the expiry set (see live.LiveListing).
-- KEYS: expiry, info, log.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local now_str = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local forgotten = string.format('%.6f', now - GRACE)
local function prune(limit)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', forgotten, 'LIMIT', 0, limit)
  if #gone > 0 then
    redis.call('ZREM', KEYS[1], unpack(gone))
    redis.call('HDEL', KEYS[2], unpack(gone))
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', LOG_ENTRIES, '*', 'd', table.concat(gone, ','))
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) elseif ttl == -2 then redis.call('EXPIRE', KEYS[3], KEEP) end
  end
  return #gone
end
