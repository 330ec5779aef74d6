-- Upserts or retracts articles and logs the change, atomically (see the crate doc).
-- KEYS[1] articles (hash), KEYS[2] retractions (hash), KEYS[3] change sequence (string),
-- KEYS[4] change log (stream). ARGV[1] 'upsert' or 'retract', ARGV[2] the log entries to keep
-- (exactly), ARGV[3] the changed ids (8 bytes little-endian each), then per article its decimal
-- id and its value (the article, or its retraction).
-- Answers the change's number.
local upsert = ARGV[1] == 'upsert'
for i = 4, #ARGV, 2 do
  if upsert then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    redis.call('HDEL', KEYS[2], ARGV[i])
  else
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
local seq = redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[2], string.format('%d-0', seq), 'ids', ARGV[3])
return seq
