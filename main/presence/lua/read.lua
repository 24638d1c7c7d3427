-- The live listing's read. ARGV: the id and value of the last log entry the
-- caller has seen ('' for none). With everyone past their grace pruned, the
-- live listing is exactly the expiry set. If that entry is still in the log,
-- everything after it is too (a stream is trimmed from its head): answers
-- {now, soonest end, newest id, newest value, 'changes', {'a'|'d', value,
-- ...}, how many are present}; otherwise everyone: {now, soonest end, newest
-- id, newest value, 'all', members, infos}. The value is compared too: a log
-- deleted and begun again within the same millisecond reuses its ids.
while prune(PRUNE_BATCH) == PRUNE_BATCH do end
local newest = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
local newest_id, newest_value = '', ''
if newest then newest_id, newest_value = newest[1], newest[2][2] end
local seen = ARGV[1] ~= '' and redis.call('XRANGE', KEYS[3], ARGV[1], ARGV[1])[1]
if seen and seen[2][2] == ARGV[2] then
  local soonest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local changes = {}
  for _, entry in ipairs(redis.call('XRANGE', KEYS[3], '(' .. ARGV[1], '+')) do
    changes[#changes + 1] = entry[2][1]
    changes[#changes + 1] = entry[2][2]
  end
  return {now_str, soonest[2] or '', newest_id, newest_value, 'changes', changes, redis.call('ZCARD', KEYS[1])}
end
local members, infos, soonest = listing('-inf')
return {now_str, soonest, newest_id, newest_value, 'all', members, infos}
