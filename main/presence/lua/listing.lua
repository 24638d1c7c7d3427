-- listing(cutoff): everyone whose presence ends after `cutoff`, as two
-- strings: members (JSON arrays) joined by commas, infos ("employee:since")
-- by spaces; and the soonest end among them ('' if none). One string each,
-- not a reply per person: far cheaper for the worker to parse. Details are
-- read HMGET_CHUNK at a time: Lua's unpack() takes about 8,000 values at most.
local function listing(cutoff)
  local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. cutoff, '+inf')
  local infos = {}
  for first = 1, #members, HMGET_CHUNK do
    local chunk = redis.call('HMGET', KEYS[2], unpack(members, first, math.min(first + HMGET_CHUNK - 1, #members)))
    for i = 1, #chunk do infos[#infos + 1] = chunk[i] or '0:0' end
  end
  local soonest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. cutoff, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return table.concat(members, ','), table.concat(infos, ' '), soonest[2] or ''
end
