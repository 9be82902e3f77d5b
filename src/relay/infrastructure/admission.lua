-- The relay's admission as ONE atomic step (docs/relay.md, "Admission"): the client rate limits of
-- the request, the provider's gates (queue order, retreat bucket) and KeyPool's key selection with
-- its lease. Included before this file (admission.script.ts composes them):
--   client-limits.lua     fg_client_evaluate(K, A, now_ms, now_us), fg_client_reply(st, commit)
--   KeyPool's library     fg_provider(K, A, now_ms)  (gates + selection, see key-selection.script.ts)
--
-- KEYS = client keys ++ provider keys
-- ARGV = [#client keys, #client args, client args..., provider args...]
-- Reply: {client reply, provider reply}; the provider reply is {} when the client limits refused
-- (or the decision came after its deadline).
--
-- All-or-nothing on the client side: a client-limit refusal takes no lease, touches no gate and
-- records nothing. Once the client limits admit, the request counts against them whatever the
-- provider step answers: a capacity refusal (the request will queue, or is told to retry) was
-- admitted by the client limits. The dispatcher's later acquisitions and the retry on another key
-- run KeyPool's selection script alone and never count the client limits again.
--
-- Redis Cluster: the client keys and the provider keys live in different hash slots; a cluster mode
-- runs the two halves as ordered steps (client evaluate + commit, then the provider step), which the
-- encoder's separate halves allow.
local ck = tonumber(ARGV[1])
local ca = tonumber(ARGV[2])
local CK, CA, PK, PA = {}, {}, {}, {}
for i = 1, ck do CK[i] = KEYS[i] end
for i = ck + 1, #KEYS do PK[i - ck] = KEYS[i] end
for i = 1, ca do CA[i] = ARGV[2 + i] end
for i = 3 + ca, #ARGV do PA[i - 2 - ca] = ARGV[i] end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local client = fg_client_evaluate(CK, CA, now_ms, now_us)
if client.stale or not client.all_ok then
  return { fg_client_reply(client, false), {} }
end
local provider = fg_provider(PK, PA, now_ms)
return { fg_client_reply(client, true), provider }
