import type { AtomicScript, ScriptValue } from '../../state/atomic-store.js';
import type { LocalDb } from '../../state/local-db.js';
import { readLua } from '../../state/lua-file.js';
import type { ReportContribution, ReportRider } from '../key-pool.types.js';
import { keyNames, RPM_LOG_TTL_MS, WINDOW_MS } from './key-selection.script.js';
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
  const args = [
    i.leaseId,
    String(Math.max(0, Math.floor(i.tokens))),
    String(Math.max(0, Math.floor(i.cooldownMs))),
    i.notSent ? (i.rpmBuckets ? `b${Math.floor(i.rpmBuckets.acquiredAtMs)}` : '1') : '0',
    String(i.hashTtlMs),
    i.tpmBuckets ? '1' : '0',
    String(c?.keys.length ?? 0),
    String(c?.args.length ?? 0),
    String(x?.keys.length ?? 0),
    String(x?.args.length ?? 0),
    ...(c?.args ?? []).map(String),
    ...(x?.args ?? []).map(String),
  ];
  return {
    keys: [
      ...keyNames(i.providerId, i.keyId, i.tpmBuckets, !!i.rpmBuckets),
      ...(c?.keys ?? []),
      ...(x?.keys ?? []),
    ],
    args,
  };
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
  const [hk, rk, tk, ik] = keys as [string, string, string, string];
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
    const oldest = db.zrange(tk, 0, 0);
    if (oldest.length === 0) reset = true;
    else if (oldest[0]!.score <= cutoff) {
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
): AtomicScript<ReleaseResult> {
  const prelude = contribution
    ? `local function fg_contribute(K, A, ko, ao, na, now, inFlight)\n${contribution.lua}\nend\n`
    : 'local fg_contribute = nil\n';
  const riding = rider ? `${rider.lua}\n` : 'local fg_ride = nil\n';
  const name = contribution ? `keypool-release+${contribution.name}` : 'keypool-release';
  return {
    name: rider ? `${name}+${rider.name}` : name,
    lua: `${LUA_WINDOW_BUCKETS}${prelude}${riding}${LUA_RELEASE}`,
    local: (db, keys, args, now) => localRelease(db, keys, args, now, contribution, rider),
  };
}
