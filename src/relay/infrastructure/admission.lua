-- The relay's admission as ONE atomic step (docs/relay.md, "Admission"): the client rate limits of
-- the request, the provider's gates (queue order, retreat bucket) and KeyPool's key selection with
-- its lease. Included before this file (admission.script.ts composes them):
--   client-limits.lua     fg_client_evaluate(K, A, now_ms, now_us, ko, ao), fg_client_reply(st, commit)
--   KeyPool's library     fg_provider(K, A, now_ms, ko, ao)  (gates + selection, see key-selection.script.ts)
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
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- both halves read KEYS/ARGV in place (offsets: client args after the 2 counts, provider keys after
-- the ck client keys, provider args after the client args)
local client = fg_client_evaluate(KEYS, ARGV, now_ms, now_us, 0, 2)
if client.stale or not client.all_ok then
  return { fg_client_reply(client, false), {} }
end
local provider = fg_provider(KEYS, ARGV, now_ms, ck, 2 + ca)
return { fg_client_reply(client, true), provider }
