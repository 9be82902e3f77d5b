-- Gives back the unused units of a local admission grant (ADMISSION_GRANTS; docs/scaling.md
-- "Local admission grants"): units from..B of the block were reserved by admission-grant.lua and
-- never admitted a request. Unit k is the request member m (k = 1) or m:k in every window.
-- KEYS: the upstream key's RPM window (exact log :rpm or sub-buckets :rpb), its in-flight set :inf,
--       then one key per client request window of the block.
-- ARGV: lease id, from, to, RPM kind ('e' exact log | 'b' sub-buckets | 'n' none), block time (ms,
--       Redis clock), RPM log TTL ms, bucket ms (key sub-buckets), client member, m, then m lease
--       ids of used units whose answers' releases were merged into one (their in-flight members
--       leave here; their RPM and client entries stay: they were used), then per client window:
--       kind (1 exact log | 4 sub-buckets), window ms.
-- Reply: {inf members removed, key RPM units removed, client units removed}.
local rk, ik = KEYS[1], KEYS[2]
local lease, from, to = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local rkind, at, rttl, bms = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local member = ARGV[8]
local m = tonumber(ARGV[9])
local co = 9 + m
local n = to - from + 1
if n < 0 then n = 0 end
local function unit(base, k) if k == 1 then return base end return base .. ':' .. k end
local ms = {}
for k = from, to do ms[#ms + 1] = unit(lease, k) end
for j = 1, m do ms[#ms + 1] = ARGV[9 + j] end
local freed = 0
if #ms > 0 then freed = redis.call('ZREM', ik, unpack(ms)) end
if n == 0 then return {freed, 0, 0} end
ms = {}
for k = from, to do ms[#ms + 1] = unit(lease, k) end
local rpm = 0
if rkind == 'e' then
  rpm = redis.call('ZREM', rk, unpack(ms))
  if rpm > 0 then redis.call('PEXPIRE', rk, rttl) end
elseif rkind == 'b' then
  local id = tostring(math.floor(at / bms))
  local v = tonumber(redis.call('HGET', rk, id) or '')
  if v ~= nil and v > 0 then
    rpm = math.min(v, n)
    redis.call('HINCRBY', rk, id, -rpm)
    redis.call('HINCRBY', rk, 's', -rpm)
  end
end
local client = 0
for i = 3, #KEYS do
  local kind = tonumber(ARGV[co + 1 + (i - 3) * 2])
  local window = tonumber(ARGV[co + 2 + (i - 3) * 2])
  local key = KEYS[i]
  if kind == 1 then
    local cms = {}
    for k = from, to do cms[#cms + 1] = unit(member, k) end
    local r = redis.call('ZREM', key, unpack(cms))
    if r > 0 then redis.call('PEXPIRE', key, 2 * window + math.ceil(window / 60)) end
    client = client + r
  elseif kind == 4 then
    local cb = math.ceil(window / 60)
    if tonumber(redis.call('HGET', key, 'b') or '') == cb then
      local id = tostring(math.floor(at / cb))
      local v = tonumber(redis.call('HGET', key, id) or '')
      if v ~= nil and v > 0 then
        local g = math.min(v, n)
        redis.call('HINCRBY', key, id, -g)
        redis.call('HINCRBY', key, 's', -g)
        client = client + g
      end
    end
  end
end
return {freed, rpm, client}
