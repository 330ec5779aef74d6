-- Stores a report's events, atomically (see the crate doc).
-- KEYS[1] event keys (set), KEYS[2] sequence (string), KEYS[3] log (stream), KEYS[4] counters
-- (hash). ARGV, per event: its 16-byte key, its log value, the 1-based index of the count it
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

local out = {}
local i = 1
while i <= #ARGV do
  local key, value, count = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local ms_lo, ms_hi = struct.unpack('<I4I4', ARGV[i + 3])
  local popularity = struct.unpack('<d', ARGV[i + 4])
  local first, n = i + 6, tonumber(ARGV[i + 5])
  i = first + n
  if redis.call('SADD', KEYS[1], key) == 0 then
    out[#out + 1] = 0
  else
    local seq = redis.call('INCR', KEYS[2])
    redis.call('XADD', KEYS[3], string.format('%d-0', seq), 'e', value)
    for j = first, first + n - 1 do
      local stored = redis.call('HGET', KEYS[4], ARGV[j])
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
      redis.call('HSET', KEYS[4], ARGV[j], struct.pack(FORMAT, unpack(c, 1, 15)))
    end
    out[#out + 1] = seq
  end
end
return out
