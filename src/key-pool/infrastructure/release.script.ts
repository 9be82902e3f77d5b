import type { AtomicScript, ScriptValue } from '../../state/atomic-store.js';
import type { LocalDb } from '../../state/local-db.js';
import { readLua } from '../../state/lua-file.js';
import type { ReportContribution, ReportRider } from '../key-pool.types.js';
import { cachedKeyNames, RPM_LOG_TTL_MS, WINDOW_MS } from './key-selection.script.js';
import { LUA_WINDOW_BUCKETS, wbAdd, wbGive } from './window-buckets.js';

/**
 * keypool-release: the answer path of a leased request in one atomic step — release the slot, give
 * back the RPM entry of a request never sent, charge tokens, apply a 429 cooldown — with an optional
 * report contribution composed into the same script (Adaptive's retreat window and learning, the
 * way admission gates are composed into the selection script). Distributed mode runs release.lua
 * (one EVALSHA per answer); embedded mode runs `localRelease` below. Callers build KEYS/ARGV with
 * `encodeRelease` and read the reply with `decodeRelease`; the two halves are held equal by
 * test/adaptive/report-equivalence.e2e-spec.ts (randomised states × outcomes through both).
 */

export interface ReleaseInput {
  providerId: string;
  keyId: string;
  leaseId: string;
  /** Tokens to charge to the key's TPM log (0: none). */
  tokens: number;
  /** 429 cooldown to apply (0: none); the later of this and the stored one wins. */
  cooldownMs: number;
  /** Nothing reached the upstream: the RPM entry goes too. */
  notSent: boolean;
  /** TTL of the key's state hash when this step has to (re)create it. */
  hashTtlMs: number;
  /** The key's TPM window is the sub-bucket window (`tpmBucketed(maxTpm)`), not the exact log. */
  tpmBuckets: boolean;
  /**
   * The key's RPM window is the sub-bucket window (`rpmBucketed(maxRpm)`): a request never sent is
   * given back to the bucket of its acquisition (`acquiredAtMs`, the store's clock then).
   */
  rpmBuckets?: { acquiredAtMs: number } | null;
  /** The contribution's logical KEYS/ARGV (null: none for this answer). */
  contribution?: { keys: string[]; args: (string | number)[] } | null;
  /** The rider's logical KEYS/ARGV (null: none for this answer). */
  rider?: { keys: string[]; args: (string | number)[] } | null;
}

/** Raw reply: [cooldownUntilMs|0, inFlight, nowMs] or [..., contribution reply]. */
export type ReleaseResult = [number, number, number] | [number, number, number, ScriptValue];

export interface ReleaseReply {
  /** 0 = no cooldown started or extended. */
  cooldownUntilMs: number;
  /** Live leases of the key after this release. */
  inFlight: number;
  /** The store's clock when the step ran. */
  nowMs: number;
  /** What the contribution returned; null when none ran. */
  contribution: ScriptValue | null;
}

export function encodeRelease(i: ReleaseInput): { keys: string[]; args: string[] } {
  const c = i.contribution ?? null;
  const x = i.rider ?? null;
  const ck = c?.keys ?? NONE;
  const ca = c?.args ?? NONE;
  const xk = x?.keys ?? NONE;
  const xa = x?.args ?? NONE;
  // one pass into preallocated arrays (every answer), the key names from the provider's name cache
  const args = new Array<string>(10 + ca.length + xa.length);
  args[0] = i.leaseId;
  args[1] = String(Math.max(0, Math.floor(i.tokens)));
  args[2] = String(Math.max(0, Math.floor(i.cooldownMs)));
  args[3] = i.notSent ? (i.rpmBuckets ? `b${Math.floor(i.rpmBuckets.acquiredAtMs)}` : '1') : '0';
  args[4] = String(i.hashTtlMs);
  args[5] = i.tpmBuckets ? '1' : '0';
  args[6] = String(ck.length);
  args[7] = String(ca.length);
  args[8] = String(xk.length);
  args[9] = String(xa.length);
  for (let j = 0; j < ca.length; j++) args[10 + j] = String(ca[j]);
  for (let j = 0; j < xa.length; j++) args[10 + ca.length + j] = String(xa[j]);
  // hash, rpm|rpb, tpm|tpb, inf (keyNames' order)
  const n = cachedKeyNames(i.providerId, i.keyId);
  const keys = new Array<string>(4 + ck.length + xk.length);
  keys[0] = n[0];
  keys[1] = i.rpmBuckets ? n[4] : n[1];
  keys[2] = i.tpmBuckets ? n[5] : n[2];
  keys[3] = n[3];
  for (let j = 0; j < ck.length; j++) keys[4 + j] = ck[j]!;
  for (let j = 0; j < xk.length; j++) keys[4 + ck.length + j] = xk[j]!;
  return { keys, args };
}

const NONE: readonly never[] = [];

/**
 * ADMISSION_GRANTS (docs/scaling.md "Local admission grants"): plain releases of one upstream key
 * (encodeRelease'd: no cooldown, sent) merged into ONE — the first's KEYS/ARGV (its lease, its
 * contribution) with every entry's tokens summed, for the key's TPM window and for the rider's
 * token charge (one charge of the sum to the same budgets). null when they cannot be: another
 * entry has a contribution of its own, a different key or rider, a cooldown, a request not sent,
 * or a rider with a spend settlement. Only the first's lease leaves the in-flight set: the caller
 * removes the others'.
 */
export function mergeReleases(
  entries: readonly { keys: string[]; args: string[] }[],
): { keys: string[]; args: string[] } | null {
  const x = entries[0];
  if (!x) return null;
  const ga = Number(x.args[7]);
  const xk = Number(x.args[8]);
  const xa = Number(x.args[9]);
  if (xa > 4) return null;
  const head = 4 + Number(x.args[6]);
  let tokens = 0;
  let charged = 0;
  for (const e of entries) {
    if (e.args[2] !== '0' || e.args[3] !== '0') return null;
    if (e !== x && e.args[7] !== '0') return null;
    if (Number(e.args[8]) !== xk || Number(e.args[9]) !== xa) return null;
    for (let i = 0; i < 4; i++) if (e.keys[i] !== x.keys[i]) return null;
    const eh = 4 + Number(e.args[6]);
    for (let i = 0; i < xk; i++) if (e.keys[eh + i] !== x.keys[head + i]) return null;
    tokens += Number(e.args[1]) || 0;
    if (xa > 0) charged += Number(e.args[10 + Number(e.args[7]) + 1]) || 0;
  }
  const args = [...x.args];
  args[1] = String(tokens);
  if (xa > 0) args[10 + ga + 1] = String(charged);
  return { keys: x.keys, args };
}

export function decodeRelease(r: ReleaseResult): ReleaseReply {
  return {
    cooldownUntilMs: Number(r[0]),
    inFlight: Number(r[1]),
    nowMs: Number(r[2]),
    contribution: r.length > 3 ? (r[3] ?? null) : null,
  };
}

const LUA_RELEASE = readLua(new URL('./release.lua', import.meta.url), { WINDOW_MS, RPM_LOG_TTL_MS });

function tokensOf(member: string): number {
  const m = /:(\d+)$/.exec(member);
  return m ? Number(m[1]) : 0;
}

/** The TypeScript half of release.lua (same steps, same order). */
export function localRelease(
  db: LocalDb,
  keys: string[],
  args: string[],
  now: number,
  contribution: ReportContribution | null,
  rider: ReportRider | null = null,
): ReleaseResult {
  const hk = keys[0]!;
  const rk = keys[1]!;
  const tk = keys[2]!;
  const ik = keys[3]!;
  const leaseId = args[0]!;
  const hashTtl = Number(args[4]);
  const freed = db.zrem(ik, leaseId);
  if (args[3] === '1') {
    if (db.zrem(rk, leaseId) === 1) db.pexpire(rk, RPM_LOG_TTL_MS);
  } else if (freed === 1 && args[3]!.startsWith('b')) wbGive(db, rk, Number(args[3]!.slice(1)) || 0);
  const tokens = Number(args[1]) || 0;
  if (tokens > 0 && args[5] === '1') {
    wbAdd(db, tk, now, tokens);
  } else if (tokens > 0) {
    const cutoff = now - WINDOW_MS;
    let removed = 0;
    let reset = false;
    const oldest = db.zfirst(tk);
    if (oldest === undefined) reset = true;
    else if (oldest.score <= cutoff) {
      for (const e of db.zrange(tk, 0, -1)) {
        if (e.score > cutoff) break;
        removed += tokensOf(e.member);
      }
      db.zremrangebyscore(tk, -Infinity, cutoff);
      // LocalDb keeps an emptied set; Redis deletes it (EXISTS = 0): count, not existence
      if (db.zcard(tk) === 0) reset = true;
    }
    let add = 0;
    const member = `${leaseId}:${args[1]}`;
    if (db.zscore(tk, member) === null) {
      db.zadd(tk, now, member);
      add = tokens;
    }
    if (reset) {
      db.hset(hk, { ts: add });
      db.pexpire(hk, hashTtl);
    } else {
      const delta = add - removed;
      const v = delta !== 0 ? db.hincrby(hk, 'ts', delta) : Number(db.hget(hk, 'ts') ?? '0') || 0;
      if (v - add < 0) db.hset(hk, { ts: add });
      if (v === delta) db.pexpire(hk, hashTtl);
    }
    db.pexpire(tk, WINDOW_MS + 1000);
  }
  let cd = 0;
  const cms = Number(args[2]) || 0;
  if (cms > 0) {
    cd = now + cms;
    const cur = Number(db.hget(hk, 'cd') ?? '0') || 0;
    if (cur > cd) cd = cur;
    db.hset(hk, { cd });
    db.pexpire(hk, hashTtl);
  }
  const gk = Number(args[6]) || 0;
  const ga = Number(args[7]) || 0;
  const xk = Number(args[8]) || 0;
  const xa = Number(args[9]) || 0;
  if (rider && (xk > 0 || xa > 0))
    rider.run(db, keys.slice(4 + gk, 4 + gk + xk), args.slice(10 + ga, 10 + ga + xa), now);
  const inFlight = db.zcount(ik, now + 0.5, Infinity);
  if (contribution && (gk > 0 || ga > 0)) {
    const out = contribution.run(db, keys.slice(4, 4 + gk), args.slice(10, 10 + ga), now, inFlight);
    if (out !== null && out !== undefined) return [cd, inFlight, now, out];
  }
  return [cd, inFlight, now];
}

/**
 * The release script, optionally with a report contribution and a rider composed in front of it
 * (a rider's keys and args are only read when the inputs carry some: `encodeRelease({ rider })`).
 */
export function releaseScript(
  contribution: ReportContribution | null = null,
  rider: ReportRider | null = null,
): ReleaseScript {
  const prelude = contribution
    ? `local function fg_contribute(K, A, ko, ao, na, now, inFlight)\n${contribution.lua}\nend\n`
    : 'local fg_contribute = nil\n';
  const riding = rider ? `${rider.lua}\n` : 'local fg_ride = nil\n';
  const base = contribution ? `keypool-release+${contribution.name}` : 'keypool-release';
  const name = rider ? `${base}+${rider.name}` : base;
  const local = (db: LocalDb, keys: string[], args: string[], now: number): ReleaseResult =>
    localRelease(db, keys, args, now, contribution, rider);
  return {
    name,
    lua: `${LUA_WINDOW_BUCKETS}${prelude}${riding}${LUA_RELEASE}`,
    local,
    batch: {
      name: `${name}*batch`,
      lua: `${LUA_WINDOW_BUCKETS}${prelude}${riding}local function fg_release(KEYS, ARGV)\n${LUA_RELEASE}\nend\n${LUA_BATCH}`,
      local: (db, keys, args, now) => localReleaseBatch(db, keys, args, now, local),
    },
  };
}

/**
 * A release script and its batch form: several releases (of one Redis Cluster slot) in one call,
 * each run exactly as the single script would run it, in order (ReleaseBatcher sends it).
 */
export interface ReleaseScript extends AtomicScript<ReleaseResult> {
  readonly batch: AtomicScript<ReleaseBatchResult>;
}

/** One entry per release, in order: its reply, or the error it raised (a string). */
export type ReleaseBatchResult = (ReleaseResult | string)[];

/**
 * The batch: ARGV = n, then n pairs (#KEYS, #ARGV of each release), then every release's ARGV in
 * order; KEYS = every release's KEYS in order (encodeReleaseBatch). Each release runs in its own
 * pcall: one that raises an error leaves its reply an error string and the others run (a single
 * call that raised would have been an error of that call alone; the releases before it in the
 * batch have run either way, as they would have as separate calls).
 */
const LUA_BATCH = `
local n = tonumber(ARGV[1])
local out = {}
local ko, ao = 0, 1 + 2 * n
for i = 1, n do
  local nk, na = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local k, a = {}, {}
  for j = 1, nk do k[j] = KEYS[ko + j] end
  for j = 1, na do a[j] = ARGV[ao + j] end
  ko, ao = ko + nk, ao + na
  local ok, r = pcall(fg_release, k, a)
  if ok then out[i] = r
  elseif type(r) == 'table' and r.err then out[i] = 'ERR ' .. tostring(r.err)
  else out[i] = 'ERR ' .. tostring(r) end
end
return out
`;

/** KEYS/ARGV of a batch of releases (each `encodeRelease`d), for `ReleaseScript.batch`. */
export function encodeReleaseBatch(entries: readonly { keys: string[]; args: string[] }[]): {
  keys: string[];
  args: string[];
} {
  const keys: string[] = [];
  const args: string[] = [String(entries.length)];
  for (const e of entries) args.push(String(e.keys.length), String(e.args.length));
  for (const e of entries) {
    keys.push(...e.keys);
    args.push(...e.args);
  }
  return { keys, args };
}

/** The TypeScript half of the batch: the same releases in the same order. */
function localReleaseBatch(
  db: LocalDb,
  keys: string[],
  args: string[],
  now: number,
  one: (db: LocalDb, keys: string[], args: string[], now: number) => ReleaseResult,
): ReleaseBatchResult {
  const n = Number(args[0]) || 0;
  const out: ReleaseBatchResult = [];
  let ko = 0;
  let ao = 1 + 2 * n;
  for (let i = 0; i < n; i++) {
    const nk = Number(args[1 + 2 * i]);
    const na = Number(args[2 + 2 * i]);
    try {
      out.push(one(db, keys.slice(ko, ko + nk), args.slice(ao, ao + na), now));
    } catch (err) {
      out.push(`ERR ${err instanceof Error ? err.message : String(err)}`);
    }
    ko += nk;
    ao += na;
  }
  return out;
}
