-- adaptive-report: Adaptive's part of the answer path, composed into KeyPool's release script as
-- its report contribution (one atomic step and one round trip per upstream answer; docs/adaptive.md):
--   1. the provider's sliding window of answers (ad:{p}:rw) takes this answer, and the retreat
--      state machine (ad:{p}:rt) runs once (rules: domain/retreat-machine.ts);
--   2. when the answer calls for it, the key's learning step (learn.lua: a 429, or an increase the
--      instance decided from its utilisation samples) on kp:{p}:k:<id> / ad:{p}:k:<id>.
-- This file is the body of `function(K, A, ko, ao, na, now, inFlight)` (its KEYS from K[ko + 1],
-- its na ARGV from A[ao + 1]: CK and CA below, read in place); report.script.ts puts
-- `local function fg_learn(KEYS, ARGV, NOW) <learn.lua> end` in front of it. The TypeScript half
-- is `localReport` in report.script.ts; test/adaptive/report-equivalence.e2e-spec.ts runs
-- randomised states × answers through both and compares replies and stored state.
--
-- CK: [ad:{p}:rt, ad:{p}:rw, kp:{p}:k:<id>, ad:{p}:k:<id>]
-- CA: n, e (answers and rate 429s to add), windowMs, minSamples, enter‱, exit‱, holdMs, factor‰,
--     minFactor‰, step‰, stepMs, baseRpm, enabled (1|0), then the learning step's ARGV (encodeLearn)
--     when there is one; a '429' step's inFlight becomes max(its value, inFlight after release + 1).
-- Reply: {{st, f, N, E, event, prev, base, accepted}} or {{…}, {changed, old, new, version, code}}
--
-- Writes only what changes: the window's slot is (re)started with one HSET, and only then are the
-- TTLs of rw and rt renewed (a slot is far shorter than either TTL); rt is written only when the
-- state machine changed a field (a steady NORMAL provider's answers cost HMGET, HSET, HMGET).

-- Constants shared with TypeScript; the loader refuses a file whose values differ.
local WINDOW_SLOTS = 10                 -- WINDOW_SLOTS
local ACCEPTED_MARGIN_PERMILLE = 900    -- ACCEPTED_MARGIN_PERMILLE
local RT_TTL_MS = 86400000              -- RT_TTL_MS

local rt, rw = K[ko + 1], K[ko + 2]
local function arg(i) return tonumber(A[ao + i]) or 0 end
local addN, addE, windowMs, minSamples, enterP, exitP, holdMs, factorP, minFactorP, stepP, stepMs, baseRpm =
  arg(1), arg(2), arg(3), arg(4), arg(5), arg(6), arg(7), arg(8), arg(9), arg(10), arg(11), arg(12)
local enabled = A[ao + 13] == '1'

-- 1a. the window. Its totals N and E are kept in the hash too, for the slot (and window length)
-- they were summed at (field c = '<slot>:<windowMs>'): while the slot is the same, no slot leaves
-- the window, so an answer adds to its slot and to N/E (one HMGET of the totals and the slot, one
-- HSET); the first answer of a new slot reads every slot (HGETALL), restarts its own and sums them again.
local slotMs = math.ceil(windowMs / WINDOW_SLOTS)
local curSlot = math.floor(now / slotMs)
local tag = curSlot .. ':' .. windowMs
local i = curSlot % WINDOW_SLOTS
local fresh = false
local N, E = 0, 0
local tot = redis.call('HMGET', rw, 'c', 'N', 'E', 'n' .. i, 'e' .. i)
if addN > 0 and tot[1] == tag then
  -- the slot's counts were read with the totals (same atomic step): one HSET writes them all
  N = (tonumber(tot[2]) or 0) + addN
  E = (tonumber(tot[3]) or 0) + addE
  if addE > 0 then
    redis.call('HSET', rw, 'n' .. i, (tonumber(tot[4]) or 0) + addN, 'N', N, 'e' .. i, (tonumber(tot[5]) or 0) + addE, 'E', E)
  else
    redis.call('HSET', rw, 'n' .. i, (tonumber(tot[4]) or 0) + addN, 'N', N)
  end
else
  local h = {}
  local all = redis.call('HGETALL', rw)
  for j = 1, #all, 2 do h[all[j]] = tonumber(all[j + 1]) end
  if addN > 0 then
    if h['s' .. i] ~= curSlot then
      h['s' .. i] = curSlot; h['n' .. i] = addN; h['e' .. i] = addE
      fresh = true
    else
      h['n' .. i] = (h['n' .. i] or 0) + addN
      h['e' .. i] = (h['e' .. i] or 0) + addE
    end
  end
  for j = 0, WINDOW_SLOTS - 1 do
    local sid = h['s' .. j]
    if sid ~= nil and sid > curSlot - WINDOW_SLOTS and sid <= curSlot then
      N = N + (h['n' .. j] or 0)
      E = E + (h['e' .. j] or 0)
    end
  end
  if addN > 0 then
    redis.call('HSET', rw, 's' .. i, curSlot, 'n' .. i, h['n' .. i], 'e' .. i, h['e' .. i] or 0, 'c', tag, 'N', N, 'E', E)
    if fresh then redis.call('PEXPIRE', rw, windowMs * 2 + 1000) end
  end
end

-- 1b. the state machine (stepRetreat)
local raw = redis.call('HMGET', rt, 'st', 'f', 'since', 'cut', 'calm', 'step', 'ob')
local st0, f0, since0, cut0, calm0, step0, ob0 = tonumber(raw[1]) or 0, tonumber(raw[2]) or 1000, tonumber(raw[3]) or 0,
  tonumber(raw[4]) or 0, tonumber(raw[5]) or 0, tonumber(raw[6]) or 0, tonumber(raw[7]) or 0
local st, f, since, cut, calm, step, ob = st0, f0, since0, cut0, calm0, step0, ob0
local accepted = math.floor((N - E) * 60000 / windowMs)
local observed = math.floor(N * 60000 / windowMs)
local base = baseRpm
if base <= 0 then base = ob end
local event = ''
local function cutFrom(fc, b)
  local a = math.floor(fc * factorP / 1000)
  local c = math.floor(accepted * ACCEPTED_MARGIN_PERMILLE / b)
  if c < a then a = c end
  if a < minFactorP then a = minFactorP end
  return a
end
if not enabled then
  if st ~= 0 then st = 0; f = 1000; since = now; cut = 0; calm = 0; step = 0; ob = 0; event = 'disabled' end
else
  local enter = N >= minSamples and E * 10000 > enterP * N
  local below = E == 0 or E * 10000 < exitP * N
  if st == 0 then
    if enter then
      if baseRpm <= 0 then ob = math.max(1, observed); base = ob end
      f = cutFrom(1000, base); st = 1; since = now; cut = now; calm = 0; event = 'enter'
    end
  elseif st == 1 then
    if enter and now - cut >= windowMs then
      f = math.min(f, cutFrom(f, math.max(1, base))); cut = now; calm = 0; event = 'cut'
    elseif below then
      if calm == 0 then calm = now end
      if now - calm >= holdMs then st = 2; since = now; step = now; calm = 0; event = 'recover' end
    else
      calm = 0
    end
  elseif enter then
    f = math.min(f, cutFrom(f, math.max(1, base))); st = 1; since = now; cut = now; calm = 0; event = 'retreat'
  elseif below and now - step >= stepMs then
    f = math.min(1000, f + stepP); step = now; event = 'step'
    if f >= 1000 then st = 0; f = 1000; since = now; ob = 0; event = 'normal' end
  end
end
if st ~= st0 or f ~= f0 or since ~= since0 or cut ~= cut0 or calm ~= calm0 or step ~= step0 or ob ~= ob0 then
  redis.call('HSET', rt, 'st', st, 'f', f, 'since', since, 'cut', cut, 'calm', calm, 'step', step, 'ob', ob)
  -- a cut takes effect at once: the burst saved up at the old rate is dropped
  if event == 'enter' or event == 'cut' or event == 'retreat' then redis.call('HSET', rt, 'tk', 0, 'ts', now) end
  redis.call('PEXPIRE', rt, RT_TTL_MS)
elseif fresh then
  redis.call('PEXPIRE', rt, RT_TTL_MS)
end
local retreat = {st, f, N, E, event, st0, base, accepted}

-- 2. the learning step, when there is one
if na > 13 then
  local LA = {}
  for i = 14, na do LA[#LA + 1] = A[ao + i] end
  if LA[1] == '429' then
    local at = tonumber(LA[3]) or 0
    if inFlight + 1 > at then LA[3] = tostring(inFlight + 1) end
  end
  return {retreat, fg_learn({K[ko + 3], K[ko + 4]}, LA, now)}
end
return {retreat}
