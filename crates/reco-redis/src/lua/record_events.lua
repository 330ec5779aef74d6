-- Stores a report's events, atomically (see the crate doc).
-- KEYS[1] sequence (string), KEYS[2] log (stream), KEYS[3] counters (hash), KEYS[4] today's
-- event keys (set), KEYS[5..] the event keys of the dedup window's other days (sets).
-- ARGV[1] the seconds today's set lives after its last addition; then, per event: its 16-byte key, its log value, the 1-based index of the count it
-- adds to in the unpacked counters, read_ms (8 bytes LE), popularity_log2 (8 bytes LE f64), the
-- number of article ids n, then the n decimal ids.
-- Answers per event its sequence number, 0 for a duplicate.

-- The counters' layout (codec.rs): six u64 counts, popularity_log2 (f64), dislikes (u64), each
-- u64 as two u32 halves, low first. Lua numbers are doubles: halves keep every u64 exact.
local FORMAT = '<I4I4I4I4I4I4I4I4I4I4I4I4dI4I4'
local READS, READ_MS, POPULARITY = 9, 11, 13
local TWO_32 = 4294967296

-- (lo, hi) + (dlo, dhi), saturating at 2^64 - 1 like ArticleCounters::apply.
local function add(lo, hi, dlo, dhi)
  lo = lo + dlo
  local carry = 0
  if lo >= TWO_32 then
    lo, carry = lo - TWO_32, 1
  end
  hi = hi + dhi + carry
  if hi >= TWO_32 then
    return TWO_32 - 1, TWO_32 - 1
  end
  return lo, hi
end

-- reco_engine::popularity::log2_add: log2(2^a + 2^b), with log1p computed accurately.
local LN_2 = math.log(2)
local function log1p(x)
  local u = 1 + x
  if u == 1 then
    return x
  end
  return math.log(u) * x / (u - 1)
end
local function log2_add(a, b)
  local hi, lo = a, b
  if b > a then
    hi, lo = b, a
  end
  if lo == -math.huge then
    return hi
  end
  return hi + log1p(2 ^ (lo - hi)) / LN_2
end

-- Whether the key is in the set of a day of the window before today (or after: clocks differ).
local function seen_before(key)
  for k = 5, #KEYS do
    if redis.call('SISMEMBER', KEYS[k], key) == 1 then
      return true
    end
  end
  return false
end

local out = {}
local added = false
local i = 2
while i <= #ARGV do
  local key, value, count = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local ms_lo, ms_hi = struct.unpack('<I4I4', ARGV[i + 3])
  local popularity = struct.unpack('<d', ARGV[i + 4])
  local first, n = i + 6, tonumber(ARGV[i + 5])
  i = first + n
  if seen_before(key) or redis.call('SADD', KEYS[4], key) == 0 then
    out[#out + 1] = 0
  else
    added = true
    local seq = redis.call('INCR', KEYS[1])
    redis.call('XADD', KEYS[2], string.format('%d-0', seq), 'e', value)
    for j = first, first + n - 1 do
      local stored = redis.call('HGET', KEYS[3], ARGV[j])
      local c
      if stored then
        c = {struct.unpack(FORMAT, stored)}
      else
        c = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -math.huge, 0, 0}
      end
      c[count], c[count + 1] = add(c[count], c[count + 1], 1, 0)
      if count == READS then
        c[READ_MS], c[READ_MS + 1] = add(c[READ_MS], c[READ_MS + 1], ms_lo, ms_hi)
      end
      c[POPULARITY] = log2_add(c[POPULARITY], popularity)
      redis.call('HSET', KEYS[3], ARGV[j], struct.pack(FORMAT, unpack(c, 1, 15)))
    end
    out[#out + 1] = seq
  end
end
if added then
  redis.call('EXPIRE', KEYS[4], ARGV[1])
end
return out
