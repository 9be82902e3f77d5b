import type { AtomicScript, ScriptValue } from '../../state/atomic-store.js';
import type { LocalDb } from '../../state/local-db.js';
import { readLua } from '../../state/lua-file.js';
import {
  CLOSED,
  HALF_OPEN,
  OPEN,
  RECORD_FIELDS,
  stepBreaker,
  type BreakerOp,
  type BreakerRecord,
  type BreakerRules,
  type BreakerTransition,
  type ClaimAnswer,
  type StateCode,
} from '../domain/breaker.js';

/**
 * routing-breaker: one atomic step on a target's breaker record. Embedded: `localBreaker` reads the
 * record from LocalDb, runs the rule (`stepBreaker`, domain/breaker.ts) and writes what changed.
 * Distributed: breaker.lua, the same rule in Lua (one EVALSHA per step), held equal to the
 * TypeScript by test/routing/breaker-equivalence.e2e-spec.ts. Callers build ARGV with
 * `encodeBreaker` and read the reply with `decodeBreaker`.
 */

/** The store key of a target's record: the provider id is the hash tag (its slot on a Cluster). */
export function breakerKey(providerId: string, model: string): string {
  return `brk:{${providerId}}:${model}`;
}

/** An idle record expires after this (a few windows and open periods): it is closed again. */
export function breakerTtlMs(rules: BreakerRules): number {
  return 3 * (rules.windowMs + rules.openMs);
}

export function encodeBreaker(op: BreakerOp, rules: BreakerRules): (string | number)[] {
  const head = [
    op.op,
    rules.consecutiveFailures,
    rules.failureRatePermille,
    rules.minRequests,
    rules.windowMs,
    rules.openMs,
    // a claim keeps the record at least as long as the probe may take
    breakerTtlMs(rules) + (op.op === 'claim' ? op.claimMs : 0),
  ];
  switch (op.op) {
    case 'fail':
    case 'ok':
      return [...head, op.probe ? 1 : 0];
    case 'add':
      return [...head, op.n, op.lastMs];
    case 'claim':
      return [...head, op.claimMs];
    case 'release':
      return [...head, op.token];
    case 'get':
      return head;
  }
}

/** The raw reply: the record's nine fields, then transition and admission. */
export type BreakerResult = [
  number,
  number,
  number,
  number,
  number,
  number,
  number,
  number,
  number,
  string,
  string,
];

export interface BreakerReply {
  record: BreakerRecord;
  transition: BreakerTransition;
  admission: ClaimAnswer;
}

export function decodeBreaker(r: ScriptValue): BreakerReply {
  const a = Array.isArray(r) ? r : [];
  const rec = {} as Record<(typeof RECORD_FIELDS)[number], number>;
  RECORD_FIELDS.forEach((f, i) => (rec[f] = Number(a[i] ?? 0)));
  return {
    record: { ...rec, s: toState(rec.s) },
    transition: String(a[9] ?? '') as BreakerTransition,
    admission: String(a[10] ?? '') as ClaimAnswer,
  };
}

function toState(n: number): StateCode {
  return n === OPEN ? OPEN : n === HALF_OPEN ? HALF_OPEN : CLOSED;
}

function num(v: string | null | undefined): number {
  if (v === null || v === undefined || v === '') return 0;
  const x = Number(v);
  return Number.isNaN(x) ? 0 : x;
}

function decodeOp(args: string[]): BreakerOp {
  const op = args[0];
  switch (op) {
    case 'fail':
    case 'ok':
      return { op, probe: args[7] === '1' };
    case 'add':
      return { op, n: num(args[7]), lastMs: num(args[8]) };
    case 'claim':
      return { op, claimMs: num(args[7]) };
    case 'release':
      return { op, token: args[7] === undefined || args[7] === '' ? -1 : num(args[7]) };
    case 'get':
      return { op };
    default:
      throw new Error(`unknown op ${op}`);
  }
}

export function localBreaker(db: LocalDb, keys: string[], args: string[], now: number): BreakerResult {
  const key = keys[0]!;
  const stored = {} as Record<(typeof RECORD_FIELDS)[number], number>;
  for (const f of RECORD_FIELDS) stored[f] = num(db.hget(key, f));
  const rec: BreakerRecord = { ...stored, s: stored.s as StateCode };
  const rules: BreakerRules = {
    consecutiveFailures: num(args[1]),
    failureRatePermille: num(args[2]),
    minRequests: num(args[3]),
    windowMs: num(args[4]),
    openMs: num(args[5]),
  };
  const step = stepBreaker(rec, decodeOp(args), now, rules);
  const r = step.next;
  if (step.changed) {
    db.hset(key, { s: r.s, cf: r.cf, ws: r.ws, wf: r.wf, wr: r.wr, ou: r.ou, pu: r.pu, lf: r.lf, v: r.v });
    db.pexpire(key, num(args[6]));
  }
  return [r.s, r.cf, r.ws, r.wf, r.wr, r.ou, r.pu, r.lf, r.v, step.transition, step.admission];
}

const LUA_BREAKER = readLua(new URL('./breaker.lua', import.meta.url), { CLOSED, HALF_OPEN, OPEN });

export const breakerScript: AtomicScript<BreakerResult> = {
  name: 'routing-breaker',
  lua: LUA_BREAKER,
  local: localBreaker,
};
