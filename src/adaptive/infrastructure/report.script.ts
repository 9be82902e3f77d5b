import type { ReportContribution } from '../../key-pool/key-pool.types.js';
import type { AtomicScript, ScriptValue } from '../../state/atomic-store.js';
import type { LocalDb } from '../../state/local-db.js';
import { readLua } from '../../state/lua-file.js';
import {
  ACCEPTED_MARGIN_PERMILLE,
  emptyRetreatState,
  stepRetreat,
  WINDOW_SLOTS,
  type RetreatState,
} from '../domain/retreat-machine.js';
import {
  decodeLearn,
  encodeLearn,
  localLearn,
  LUA_LEARN,
  type LearnOp,
  type LearnReply,
  type LearnResult,
} from './learn.script.js';
import { learnKeys, retreatStateKey, retreatWindowKey } from './store-keys.js';

/**
 * adaptive-report: Adaptive's per-answer step — the provider's window of answers and retreat state
 * machine, plus the key's learning step when the answer calls for one — as a report contribution
 * that KeyPool composes into its release script (one round trip per answer instead of three).
 * Distributed: report.lua (with learn.lua in front as `fg_learn`); embedded: `localReport`.
 * Callers build the contribution's KEYS/ARGV with `encodeReport` and read its reply with
 * `decodeReport`; test/adaptive/report-equivalence.e2e-spec.ts holds the two halves equal.
 */

/** TTL of the provider's retreat hash (ad:{p}:rt). */
export const RT_TTL_MS = 86_400_000;

/** The retreat recorder's settings (RETREAT_* configuration in integer units). */
export interface RetreatArgs {
  windowMs: number;
  minSamples: number;
  enterPermyriad: number;
  exitPermyriad: number;
  holdMs: number;
  factorPermille: number;
  minFactorPermille: number;
  stepPermille: number;
  stepMs: number;
  /** The provider's rpm (0: none; the observed rate becomes the base on entering RETREAT). */
  baseRpm: number;
  enabled: boolean;
}

export interface ReportInput {
  providerId: string;
  keyId: string;
  /** Answers to add to the window (1 per upstream answer) and how many were rate 429s. */
  answers: number;
  rate429s: number;
  retreat: RetreatArgs;
  /**
   * The key's learning step, if this answer calls for one. A '429' step's inFlight is raised in
   * the script to the key's in-flight count after the release + 1 when that is larger.
   */
  learn: LearnOp | null;
}

/** [state, factor‰, answers in window, 429s in window, event, previous state, base rpm used, accepted rpm] */
export type RecordResult = [number, number, number, number, string, number, number, number];

export interface ReportReply {
  retreat: RecordResult;
  learn: LearnReply | null;
}

/** The retreat recorder's 13 ARGV (also those of `retreatRecordScript`). */
export function retreatArgv(answers: number, rate429s: number, r: RetreatArgs): (string | number)[] {
  return [
    answers,
    rate429s,
    r.windowMs,
    r.minSamples,
    r.enterPermyriad,
    r.exitPermyriad,
    r.holdMs,
    r.factorPermille,
    r.minFactorPermille,
    r.stepPermille,
    r.stepMs,
    r.baseRpm,
    r.enabled ? 1 : 0,
  ];
}

/** The contribution's logical KEYS and ARGV (KeyPool appends them to the release's). */
export function encodeReport(i: ReportInput): { keys: string[]; args: (string | number)[] } {
  return {
    keys: [
      retreatStateKey(i.providerId),
      retreatWindowKey(i.providerId),
      ...learnKeys(i.providerId, i.keyId),
    ],
    args: [...retreatArgv(i.answers, i.rate429s, i.retreat), ...(i.learn ? encodeLearn(i.learn) : [])],
  };
}

function toRecord(v: ScriptValue): RecordResult {
  const r = Array.isArray(v) ? v : [];
  return [
    Number(r[0]),
    Number(r[1]),
    Number(r[2]),
    Number(r[3]),
    String(r[4] ?? ''),
    Number(r[5]),
    Number(r[6]),
    Number(r[7]),
  ];
}

export function decodeReport(output: ScriptValue): ReportReply {
  const r = Array.isArray(output) ? output : [];
  const learn = r[1];
  return {
    retreat: toRecord(r[0] ?? []),
    learn: Array.isArray(learn) ? decodeLearn(learn as LearnResult) : null,
  };
}

const LUA_REPORT = readLua(new URL('./report.lua', import.meta.url), {
  WINDOW_SLOTS,
  ACCEPTED_MARGIN_PERMILLE,
  RT_TTL_MS,
});

function n(v: string | null | undefined, d: number): number {
  if (v === null || v === undefined || v === '') return d;
  const x = Number(v);
  return Number.isNaN(x) ? d : x;
}

const RETREAT_FIELDS = ['st', 'f', 'since', 'cut', 'calm', 'step', 'ob'] as const;

/** The TypeScript half of report.lua (same steps, same writes). */
export function localReport(
  db: LocalDb,
  keys: string[],
  args: string[],
  now: number,
  inFlight: number,
): ScriptValue {
  const [rt, rw] = keys as [string, string];
  const A = args.slice(0, 13).map((a) => n(a, 0));
  while (A.length < 13) A.push(0);
  const [addN, addE, windowMs] = A as [number, number, number];

  // 1a. the window (totals kept for the slot they were summed at: see report.lua)
  const slotMs = Math.ceil(windowMs / WINDOW_SLOTS);
  const cur = Math.floor(now / slotMs);
  const tag = `${cur}:${windowMs}`;
  const i = cur % WINDOW_SLOTS;
  let fresh = false;
  let N = 0;
  let E = 0;
  if (addN > 0 && db.hget(rw, 'c') === tag) {
    N = n(db.hget(rw, 'N'), 0) + addN;
    E = n(db.hget(rw, 'E'), 0) + addE;
    db.hincrby(rw, `n${i}`, addN);
    db.hincrby(rw, 'N', addN);
    if (addE > 0) {
      db.hincrby(rw, `e${i}`, addE);
      db.hincrby(rw, 'E', addE);
    }
  } else {
    const h: Record<string, number> = {};
    for (const [k, v] of Object.entries(db.hgetall(rw))) h[k] = Number(v);
    if (addN > 0) {
      if (h[`s${i}`] !== cur) {
        h[`s${i}`] = cur;
        h[`n${i}`] = addN;
        h[`e${i}`] = addE;
        fresh = true;
      } else {
        h[`n${i}`] = (h[`n${i}`] ?? 0) + addN;
        h[`e${i}`] = (h[`e${i}`] ?? 0) + addE;
      }
    }
    for (let j = 0; j < WINDOW_SLOTS; j++) {
      const sid = h[`s${j}`];
      if (sid !== undefined && !Number.isNaN(sid) && sid > cur - WINDOW_SLOTS && sid <= cur) {
        N += h[`n${j}`] ?? 0;
        E += h[`e${j}`] ?? 0;
      }
    }
    if (addN > 0) {
      db.hset(rw, { [`s${i}`]: cur, [`n${i}`]: h[`n${i}`]!, [`e${i}`]: h[`e${i}`] ?? 0, c: tag, N, E });
      if (fresh) db.pexpire(rw, windowMs * 2 + 1000);
    }
  }

  // 1b. the state machine
  const raw = RETREAT_FIELDS.map((f) => db.hget(rt, f));
  const s0: RetreatState = {
    st: n(raw[0], 0),
    f: n(raw[1], 1000),
    since: n(raw[2], 0),
    cut: n(raw[3], 0),
    calm: n(raw[4], 0),
    step: n(raw[5], 0),
    ob: n(raw[6], 0),
  };
  const r = stepRetreat(s0, N, E, A[11]!, now, {
    windowMs,
    minSamples: A[3]!,
    enterPermyriad: A[4]!,
    exitPermyriad: A[5]!,
    holdMs: A[6]!,
    factorPermille: A[7]!,
    minFactorPermille: A[8]!,
    stepPermille: A[9]!,
    stepMs: A[10]!,
    enabled: args[12] === '1',
  });
  const s = r.event === 'disabled' ? { ...emptyRetreatState(), since: now } : r.state;
  if (RETREAT_FIELDS.some((f) => s[f] !== s0[f])) {
    db.hset(rt, { st: s.st, f: s.f, since: s.since, cut: s.cut, calm: s.calm, step: s.step, ob: s.ob });
    // A cut takes effect at once: the burst saved up at the old rate is dropped.
    if (r.event === 'enter' || r.event === 'cut' || r.event === 'retreat') db.hset(rt, { tk: 0, ts: now });
    db.pexpire(rt, RT_TTL_MS);
  } else if (fresh) {
    db.pexpire(rt, RT_TTL_MS);
  }
  const retreat: ScriptValue = [s.st, s.f, N, E, r.event, s0.st, r.base, r.acceptedRpm];

  // 2. the learning step, when there is one
  if (args.length > 13) {
    const la = args.slice(13);
    if (la[0] === '429' && inFlight + 1 > n(la[2], 0)) la[2] = String(inFlight + 1);
    return [retreat, localLearn(db, [keys[2]!, keys[3]!], la, now)];
  }
  return [retreat];
}

/** The contribution KeyPool composes into its release script (KeyPoolService.useReportContributor). */
export const ADAPTIVE_REPORT: ReportContribution = {
  name: 'adaptive-report',
  lua: `local function fg_learn(KEYS, ARGV, NOW)\n${LUA_LEARN}\nend\n${LUA_REPORT}`,
  run: localReport,
};

/**
 * The retreat recorder on its own (KEYS [rt, rw], ARGV = `retreatArgv`): the same report.lua without
 * a learning step, for tests and tools. → RecordResult
 */
export const retreatRecordScript: AtomicScript<RecordResult> = {
  name: 'adaptive-retreat-record',
  lua: `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function fg_report(K, A, ko, ao, na, now, inFlight)
${ADAPTIVE_REPORT.lua}
end
local out = fg_report(KEYS, ARGV, 0, 0, 13, now, 0)
return out[1]
`,
  local(db, keys, args, now) {
    const out = localReport(db, [keys[0]!, keys[1]!], args.slice(0, 13), now, 0) as ScriptValue[];
    return toRecord(out[0]!);
  },
};
