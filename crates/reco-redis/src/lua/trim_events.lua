-- Trims the event log through a number, never back: KEYS[1] log (stream), KEYS[2] the number
-- trimmed through (string); ARGV[1] the number. Answers the number trimmed through now.
local upto = tonumber(ARGV[1])
local done = tonumber(redis.call('GET', KEYS[2]) or '0')
if upto > done then
  redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-1', upto))
  redis.call('SET', KEYS[2], string.format('%d', upto))
  done = upto
end
return done
