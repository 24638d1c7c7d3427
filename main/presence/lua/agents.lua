-- Agents online: employees heartbeating in a chat or with the inbox open.
-- KEYS: agents. ARGV: seconds, then emails to count as online that long
-- (none: only count). Answers how many are online now.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if #ARGV > 1 then
  for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i]) end
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]) + 2)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now))
return redis.call('ZCARD', KEYS[1])
