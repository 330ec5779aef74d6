-- Appends one batch to a (user, channel) history, atomically (see the crate doc).
-- KEYS[1] the user's batches (sorted set, all scores 0), KEYS[2] the user's trimmed ids (set).
-- ARGV[1] '[' .. channel: the channel's lower bound; ARGV[2] its upper bound ('(' .. the next
-- channel, or '+'); ARGV[3] '[' .. channel .. time: the new batch's position; ARGV[4] the new
-- member; ARGV[5] max_batches (at least 1); ARGV[6] the channel's 4 bytes; ARGV[7] '1' when the
-- time is not positive (stale whatever is stored: no batch is newer than time 0); ARGV[8] '1'
-- when the refresh's view must still hold: ARGV[9] the channel's newest time it saw ('' none),
-- ARGV[10] '1' to check 推荐 too, ARGV[11] and ARGV[12] 推荐's bounds, ARGV[13] its newest time
-- seen ('' none).
-- Answers {1, latest} when stored, {0, latest} when stale; latest is the 8 time bytes of the
-- channel's newest batch before the call, '' when it had none.
local newest = redis.call('ZREVRANGEBYLEX', KEYS[1], ARGV[2], ARGV[1], 'LIMIT', 0, 1)[1]
local latest = newest and string.sub(newest, 5, 12) or ''
if ARGV[7] == '1' or redis.call('ZRANGEBYLEX', KEYS[1], ARGV[3], ARGV[2], 'LIMIT', 0, 1)[1] then
  return {0, latest}
end
if ARGV[8] == '1' then
  -- Another replica appended since this refresh read the history: its articles may repeat.
  if latest ~= ARGV[9] then
    return {0, latest}
  end
  if ARGV[10] == '1' then
    local all = redis.call('ZREVRANGEBYLEX', KEYS[1], ARGV[12], ARGV[11], 'LIMIT', 0, 1)[1]
    if (all and string.sub(all, 5, 12) or '') ~= ARGV[13] then
      return {0, latest}
    end
  end
end
redis.call('ZADD', KEYS[1], 0, ARGV[4])
local excess = redis.call('ZLEXCOUNT', KEYS[1], ARGV[1], ARGV[2]) - tonumber(ARGV[5])
if excess > 0 then
  for _, member in ipairs(redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, excess)) do
    -- Items start after channel 4, time 8, request id 8 and bucket 1 bytes; 9 bytes each,
    -- the article id first.
    for at = 22, #member - 8, 9 do
      redis.call('SADD', KEYS[2], ARGV[6] .. string.sub(member, at, at + 7))
    end
    redis.call('ZREM', KEYS[1], member)
  end
end
return {1, latest}
