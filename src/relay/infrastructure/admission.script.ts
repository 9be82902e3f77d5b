import type { AcquireStep } from '../../key-pool/key-pool.types.js';
import type { ClientLimitsStep } from '../../rate-limit/rate-limit.types.js';
import type { AtomicScript, ScriptValue } from '../../state/atomic-store.js';
import type { LocalDb } from '../../state/local-db.js';
import { readLua } from '../../state/lua-file.js';

/**
 * The relay's combined admission (admission.lua): client rate limits + provider gates + key
 * selection in ONE atomic step — one EVALSHA in distributed mode, one LocalDb step embedded.
 * The parts come from their modules (RateLimit's ClientLimitsStep, KeyPool's AcquireStep); this file
 * only composes them, encodes their inputs and decodes the reply.
 */
const ADMISSION_LUA = readLua(new URL('./admission.lua', import.meta.url));

/** One half's KEYS and ARGV, as its own module lays them out. */
export interface StepInputs {
  keys: string[];
  args: (string | number)[];
}

/**
 * KEYS = client keys ++ provider keys; ARGV = [#client keys, #client args, ...client args,
 * ...provider args]. The halves stay separable (`splitAdmission`), so a Redis Cluster mode can run
 * them as two ordered steps on their own slots.
 */
export function encodeAdmission(
  client: StepInputs,
  provider: StepInputs,
): { keys: string[]; args: string[] } {
  const ck = client.keys;
  const pk = provider.keys;
  const ca = client.args;
  const pa = provider.args;
  // one pass into preallocated arrays (every relayed request): no spread copies, no intermediate maps
  const keys = new Array<string>(ck.length + pk.length);
  for (let i = 0; i < ck.length; i++) keys[i] = ck[i]!;
  for (let i = 0; i < pk.length; i++) keys[ck.length + i] = pk[i]!;
  const args = new Array<string>(2 + ca.length + pa.length);
  args[0] = String(ck.length);
  args[1] = String(ca.length);
  for (let i = 0; i < ca.length; i++) args[2 + i] = String(ca[i]);
  for (let i = 0; i < pa.length; i++) args[2 + ca.length + i] = String(pa[i]);
  return { keys, args };
}

/** The inverse of encodeAdmission (the local half reads its inputs with it). */
export function splitAdmission(
  keys: string[],
  args: string[],
): { client: { keys: string[]; args: string[] }; provider: { keys: string[]; args: string[] } } {
  const ck = Number(args[0]);
  const ca = Number(args[1]);
  return {
    client: { keys: keys.slice(0, ck), args: args.slice(2, 2 + ca) },
    provider: { keys: keys.slice(ck), args: args.slice(2 + ca) },
  };
}

/** The combined reply: the client step's reply, and the provider step's (null: not run). */
export interface AdmissionReply {
  client: ScriptValue;
  provider: ScriptValue | null;
}

export function decodeAdmission(reply: ScriptValue): AdmissionReply {
  if (!Array.isArray(reply) || reply.length !== 2 || !Array.isArray(reply[1]))
    throw new Error('malformed admission reply');
  const provider = reply[1];
  return { client: reply[0]!, provider: provider.length === 0 ? null : provider };
}

/** The combined script for a client step and a provider step (cache it on `provider.name`). */
export function admissionScript(client: ClientLimitsStep, provider: AcquireStep): AtomicScript {
  return {
    name: `relay-admission+${provider.name}`,
    lua: `${client.lua}\n${provider.lua}\n${ADMISSION_LUA}`,
    local(db, keys, args, nowMs) {
      const parts = splitAdmission(keys, args);
      return runLocal(client, provider, db, parts.client, parts.provider, nowMs);
    },
  };
}

/** The local half of the combined admission, over its two halves' inputs. */
function runLocal(
  client: ClientLimitsStep,
  provider: AcquireStep,
  db: LocalDb,
  c: { keys: string[]; args: string[] },
  p: { keys: string[]; args: string[] },
  nowMs: number,
): ScriptValue {
  const st = client.evaluate(db, c.keys, c.args, nowMs);
  if (st.stale || !st.allOk) return [client.reply(db, st, false), []];
  const selected = provider.local(db, p.keys, p.args, nowMs);
  return [client.reply(db, st, true), selected];
}

const NO_INPUTS: string[] = [];

/**
 * In process only (a store that runs `local` and never the Lua): `script` (admissionScript's, for
 * its name) bound to this request's inputs, run with empty KEYS/ARGV — the same `local` steps as
 * `script.local(db, ...encodeAdmission(client, provider))`, without concatenating both halves'
 * inputs into one list and splitting them again on every request.
 */
export function boundAdmission(
  script: AtomicScript,
  client: ClientLimitsStep,
  provider: AcquireStep,
  inputs: StepInputs,
): { script: AtomicScript; keys: string[]; args: string[] } {
  const c = { keys: inputs.keys, args: strings(inputs.args) };
  const p = { keys: provider.keys, args: strings(provider.args) };
  return {
    script: {
      name: script.name,
      lua: script.lua,
      local: (db, _keys, _args, nowMs) => runLocal(client, provider, db, c, p, nowMs),
    },
    keys: NO_INPUTS,
    args: NO_INPUTS,
  };
}

/** ARGV as Redis hands it over (strings): the array itself when it already is. */
function strings(args: (string | number)[]): string[] {
  for (let i = 0; i < args.length; i++) if (typeof args[i] !== 'string') return args.map(String);
  return args as string[];
}

const ADMISSION_GRANT_LUA = readLua(new URL('./admission-grant.lua', import.meta.url));

/**
 * The combined admission with a block (ADMISSION_GRANTS=on, a single Redis only): ARGV gets one
 * trailing value, the block asked for; the reply a third element, the block taken (1 = none).
 * Its in-process half is never run (grants are off embedded); it answers as the plain admission.
 */
export function admissionGrantScript(client: ClientLimitsStep, provider: AcquireStep): AtomicScript {
  return {
    name: `relay-admission-grant+${provider.name}`,
    lua: `${client.lua}\n${provider.lua}\n${ADMISSION_GRANT_LUA}`,
    local(db, keys, args, nowMs) {
      const parts = splitAdmission(keys, args.slice(0, -1));
      const r = runLocal(client, provider, db, parts.client, parts.provider, nowMs) as ScriptValue[];
      return [...r, 1];
    },
  };
}

/** encodeAdmission's layout plus the block asked for (admissionGrantScript). */
export function encodeGrantAdmission(
  client: StepInputs,
  provider: StepInputs,
  block: number,
): { keys: string[]; args: string[] } {
  const e = encodeAdmission(client, provider);
  e.args.push(String(block));
  return e;
}

/** The grant admission's reply: decodeAdmission's, and the block taken (1 = none). */
export function decodeGrantAdmission(reply: ScriptValue): AdmissionReply & { block: number } {
  if (!Array.isArray(reply) || reply.length !== 3 || !Array.isArray(reply[1]))
    throw new Error('malformed admission reply');
  const provider = reply[1];
  return {
    client: reply[0]!,
    provider: provider.length === 0 ? null : provider,
    block: Number(reply[2]) || 1,
  };
}
