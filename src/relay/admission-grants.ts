import {
  Inject,
  Injectable,
  Logger,
  type BeforeApplicationShutdown,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { KeyLease } from '../key-pool/key-pool.types.js';
import { KeyPoolService, type DeferredRelease } from '../key-pool/services/key-pool.service.js';
import { FloodgateMetrics, type AdmissionGrantEvent } from '../metrics/floodgate-metrics.js';
import { admittedVerdict, type Verdict } from '../rate-limit/rate-limit.service.js';
import { AtomicStore, type AtomicScript } from '../state/atomic-store.js';
import { readLua } from '../state/lua-file.js';
import { PubSub, type Unsubscribe } from '../state/pub-sub.js';
import {
  demandBlock,
  GRANT_CONTENDED_MS,
  GRANT_IDLE_MS,
  GRANT_MAX_AGE_MS,
  grantDue,
  grantKey,
  takeUnit,
  unitMember,
  type GrantCount,
  type GrantDemand,
  type GrantPolicy,
} from './domain/grant-rules.js';

/** Grant keys whose demand is remembered at most (blockFor: the stale ones go first, then all). */
const DEMAND_KEYS_MAX = 10_000;

const GRANT_RETURN_LUA = readLua(new URL('./infrastructure/grant-return.lua', import.meta.url));
/** KIND_SLIDING_WINDOW / KIND_SLIDING_BUCKETS of rate-limit.scripts.ts: the windows a block charges. */
const BLOCK_KINDS = new Set([1, 4]);
const KEY_BUCKET_MS = 1000;
const RPM_LOG_TTL_MS = 121_000;
const DROP_CHANNEL = 'relay:grants-drop';
const CONTENDED_CHANNEL = 'relay:contended';

const grantReturnScript: AtomicScript = {
  name: 'relay-grant-return',
  lua: GRANT_RETURN_LUA,
  // grants are off in process (embedded mode): never run
  local: () => [0, 0, 0],
};

/**
 * The verdict of a grant's unit k (1..block): the block's (taken with B units counted in every
 * request window, so its Remaining is the window's room after all of them), with every request
 * window's remaining raised by the block's units still unspent after this request (block - k).
 * Remaining so steps down by one per request as an exact admission's would, never above what
 * the exact admission would have said (other instances' requests are not seen until the next
 * block). Pure, no store: the headers are rebuilt from the block's outcomes.
 */
export function unitVerdict(v: Verdict, block: number, k: number): Verdict {
  const unspent = block - k;
  if (unspent <= 0 || v.error !== null || v.decision.kind !== 'admitted') return v;
  const outcomes = v.decision.outcomes.map((o) =>
    o.policy.unit === 'requests' && BLOCK_KINDS.has(o.policy.kind) && o.policy.cost === 1
      ? { ...o, remaining: o.remaining + unspent }
      : o,
  );
  return admittedVerdict(outcomes);
}

interface Grant extends GrantCount {
  readonly key: string;
  readonly providerId: string;
  readonly lease: KeyLease;
  readonly member: string;
  readonly policies: readonly GrantPolicy[];
  readonly verdict: Verdict;
  /** The block's time in Redis (its sub-buckets). */
  readonly atMs: number;
  returned: boolean;
  /** Units whose request has been reported (deferred or not). */
  released: number;
  /** Releases of plain answers waiting for this grant's flush. */
  readonly deferred: DeferredRelease[];
}

/**
 * Local admission grants (ADMISSION_GRANTS, on by default; distributed mode on a single Redis; docs/scaling.md
 * "Local admission grants"). Holds the blocks the relay's admission took (admission-grant.lua), hands
 * their unused units to requests of the same subjects and provider, and gives what is left back to
 * Redis (grant-return.lua) when a grant is idle, at its max age, when the provider is contended
 * anywhere (relay:contended), on a 429/cooldown/invalidation here or on another instance
 * (relay:grants-drop), on a provider cache drop (a key change), and at shutdown.
 */
@Injectable()
export class AdmissionGrants implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger('AdmissionGrants');
  readonly enabled: boolean;
  private readonly grants = new Map<string, Grant[]>();
  private readonly contendedUntil = new Map<string, number>();
  private readonly unsubscribers: (Unsubscribe | (() => void))[] = [];
  private ticker: NodeJS.Timeout | null = null;
  private readonly returning = new Set<Promise<void>>();
  private readonly leading = new Map<string, Promise<number>>();
  /** Each grant key's recent requests here (blockFor: the block asked for follows the demand). */
  private readonly demand = new Map<string, GrantDemand>();
  /** Unit leases (the block's own included) → their grant. */
  private readonly units = new WeakMap<KeyLease, Grant>();
  /**
   * Blocks taken, requests admitted locally, units given back…: plain numbers on the hot path,
   * exported as floodgate_admission_grant_* at scrape time (`collect`); read by tests and the bench.
   */
  readonly counters = { blocks: 0, local: 0, returnedUnits: 0, returns: 0, dropped: 0, flushedReleases: 0 };
  /** What `collect` has already exported of `counters`. */
  private readonly reported = { ...this.counters };
  /** GRANT_IDLE_MS / GRANT_MAX_AGE_MS (tests may lengthen them). */
  idleMs = GRANT_IDLE_MS;
  maxAgeMs = GRANT_MAX_AGE_MS;
  private stopping = false;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    @Inject(AtomicStore) private readonly store: AtomicStore,
    @Inject(PubSub) private readonly pubsub: PubSub,
    private readonly keyPool: KeyPoolService,
    private readonly metrics: FloodgateMetrics,
  ) {
    const on = config.rateLimit.admissionGrants;
    this.enabled = on && config.mode === 'distributed' && store.kind === 'redis' && !store.slotted;
    // on by default: a Redis Cluster says once that it decides every request exactly (embedded
    // mode has no Redis to spare: nothing to say)
    if (on && !this.enabled && store.slotted)
      this.logger.log(
        'local admission grants (ADMISSION_GRANTS) need a single Redis: on a Redis Cluster every request takes the exact admission',
      );
  }

  async onModuleInit(): Promise<void> {
    if (!this.enabled) return;
    this.metrics.onCollect(() => this.collect());
    this.keyPool.useReleaseSink((lease, deferrable) => this.sinkFor(lease, deferrable));
    this.unsubscribers.push(
      await this.pubsub.subscribe(DROP_CHANNEL, (providerId) => this.drop(providerId)),
      await this.pubsub.subscribe(CONTENDED_CHANNEL, (providerId) => {
        this.contendedUntil.set(providerId, Date.now() + GRANT_CONTENDED_MS);
        this.drop(providerId);
      }),
      this.keyPool.onCacheDrop((providerId) => this.drop(providerId)),
      () => this.keyPool.useReleaseSink(null),
      this.keyPool.onOutcome((lease, outcome, result) => {
        if (outcome.status === 429 || result.cooldownUntilMs !== null || result.invalidated) {
          this.drop(lease.providerId);
          this.pubsub.publish(DROP_CHANNEL, lease.providerId).catch(() => undefined);
        }
      }),
    );
  }

  /**
   * Before any module's shutdown (Adaptive's waits for the reports a grant's flush carries): no
   * more blocks or local admissions, every grant given back with its deferred releases.
   */
  async beforeApplicationShutdown(): Promise<void> {
    this.stopping = true;
    this.drop('*');
    await Promise.allSettled([...this.returning]);
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopping = true;
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
    this.drop('*');
    await Promise.allSettled([...this.returning]);
    await Promise.all(this.unsubscribers.map(async (u) => u())).catch(() => undefined);
  }

  /** Whether a request queued for the provider here or elsewhere lately (no blocks meanwhile). */
  isContended(providerId: string): boolean {
    return (this.contendedUntil.get(providerId) ?? 0) >= Date.now();
  }

  /**
   * The block to ask for, counting this request in its grant key's demand: none while the provider
   * is contended anywhere; otherwise about the key's requests here in the last GRANT_IDLE_MS
   * (demandBlock: a lone request asks for none, a busy client for GRANT_BLOCK_MAX).
   */
  blockFor(providerId: string, key: string): number {
    const now = Date.now();
    let d = this.demand.get(key);
    if (d === undefined) {
      if (this.demand.size >= DEMAND_KEYS_MAX) this.forgetDemand(now);
      d = { bucketStart: now, current: 0, previous: 0 };
      this.demand.set(key, d);
    }
    const want = demandBlock(d, now, this.idleMs);
    if (this.stopping) return 1;
    return (this.contendedUntil.get(providerId) ?? 0) >= now ? 1 : want;
  }

  /** Drops the demand of keys without a request for two windows (bounds the map). */
  private forgetDemand(now: number): void {
    for (const [k, d] of this.demand) if (now - d.bucketStart >= 2 * this.idleMs) this.demand.delete(k);
    if (this.demand.size >= DEMAND_KEYS_MAX) this.demand.clear();
  }

  /** The grant key of a request's policies and provider (grantKey). */
  keyOf(providerId: string, policies: readonly GrantPolicy[]): string {
    return grantKey(providerId, policies);
  }

  /**
   * The block admission in flight for a grant key on this instance: resolves with the block it
   * took (1: none). One at a time per key: the requests that find no unit wait for it and take
   * its units, so an instance never holds more than one grant with units left per key (the
   * under-admission bound, docs/scaling.md).
   */
  leader(key: string): Promise<number> | undefined {
    return this.leading.get(key);
  }

  /** Becomes the key's block admission in flight; call the returned function with the block taken. */
  lead(key: string): (block: number) => void {
    let done!: (block: number) => void;
    this.leading.set(key, new Promise<number>((resolve) => (done = resolve)));
    return (block) => {
      this.leading.delete(key);
      done(block);
    };
  }

  /** A unit of a live grant for this grant key (its lease and the block's verdict), or null. */
  take(key: string, providerId: string): { lease: KeyLease; verdict: Verdict } | null {
    if (this.grants.size === 0 || this.stopping) return null;
    if ((this.contendedUntil.get(providerId) ?? 0) >= Date.now()) return null;
    const list = this.grants.get(key);
    if (!list) return null;
    const now = Date.now();
    for (const g of list) {
      const k = takeUnit(g, now, this.idleMs, this.maxAgeMs);
      if (k === null) continue;
      this.counters.local++;
      const lease = this.keyPool.unitLease(g.lease, unitMember(g.lease.leaseId, k));
      this.units.set(lease, g);
      return { lease, verdict: unitVerdict(g.verdict, g.block, k) };
    }
    return null;
  }

  /** Keeps a block the admission took (`block` units; unit 1 is the admitted request's own). */
  add(
    key: string,
    providerId: string,
    policies: readonly GrantPolicy[],
    lease: KeyLease,
    member: string,
    block: number,
    verdict: Verdict,
  ): void {
    this.counters.blocks++;
    const now = Date.now();
    const g: Grant = {
      key,
      providerId,
      lease,
      member,
      policies,
      verdict,
      atMs: lease.acquiredAtMs,
      block,
      used: 1,
      createdAt: now,
      lastUsedAt: now,
      returned: false,
      released: 0,
      deferred: [],
    };
    this.units.set(lease, g);
    const list = this.grants.get(g.key);
    if (list) list.push(g);
    else this.grants.set(g.key, [g]);
    if (this.ticker === null) {
      this.ticker = setInterval(() => this.sweep(), 50);
      this.ticker.unref();
    }
  }

  /** Gives back every grant of the provider ('*': all). */
  drop(providerId: string): void {
    if (providerId !== '*') this.counters.dropped++;
    for (const list of [...this.grants.values()])
      for (const g of [...list]) if (providerId === '*' || g.providerId === providerId) this.giveBack(g);
  }

  /**
   * Scrape time: the counters' growth since the last scrape into floodgate_admission_grant_*
   * (docs/observability.md), and the units held unused into its gauge.
   */
  private collect(): void {
    const c = this.counters;
    const r = this.reported;
    const events: [AdmissionGrantEvent, number, keyof typeof c][] = [
      ['block', c.blocks, 'blocks'],
      ['local_admission', c.local, 'local'],
      ['flushed_release', c.flushedReleases, 'flushedReleases'],
      ['give_back', c.returns, 'returns'],
      ['drop', c.dropped, 'dropped'],
    ];
    for (const [event, total, name] of events) {
      const delta = total - r[name];
      if (delta > 0) this.metrics.admissionGrantEvents.labels(event).inc(delta);
      r[name] = total;
    }
    const units = c.returnedUnits - r.returnedUnits;
    if (units > 0) this.metrics.admissionGrantReturnedUnits.inc(units);
    r.returnedUnits = c.returnedUnits;
    this.metrics.admissionGrantUnitsHeld.set(this.unitsHeld());
  }

  /** Units reserved in Redis by live grants and not handed out yet (floodgate_admission_grant_units_held). */
  unitsHeld(): number {
    let held = 0;
    for (const list of this.grants.values()) for (const g of list) held += Math.max(0, g.block - g.used);
    return held;
  }

  /** Grants held (tests). */
  held(): number {
    let n = 0;
    for (const list of this.grants.values()) n += list.length;
    return n;
  }

  /** Resolves once every give-back sent so far has been answered (tests). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.returning]);
  }

  /**
   * KeyPool asks on every report: a unit of a live grant whose answer was plain waits for the
   * grant's flush; the flush goes as soon as every unit of a used-up grant has been reported.
   */
  private sinkFor(lease: KeyLease, deferrable: boolean): ((d: DeferredRelease) => void) | null {
    const g = this.units.get(lease);
    if (!g) return null;
    this.units.delete(lease);
    if (g.returned) return null;
    g.released++;
    if (!deferrable) {
      this.flushIfDone(g);
      return null;
    }
    return (d) => {
      if (g.returned) {
        // flushed meanwhile (cannot happen: the report hands it over synchronously): send alone
        this.keyPool.sendDeferred([d]);
        return;
      }
      g.deferred.push(d);
      this.flushIfDone(g);
    };
  }

  private flushIfDone(g: Grant): void {
    if (g.used >= g.block && g.released >= g.block) this.giveBack(g);
  }

  private sweep(): void {
    const now = Date.now();
    for (const list of [...this.grants.values()])
      for (const g of [...list]) if (grantDue(g, now, this.idleMs, this.maxAgeMs)) this.giveBack(g);
    if (this.grants.size === 0 && this.ticker !== null) {
      clearInterval(this.ticker);
      this.ticker = null;
    }
  }

  private remove(g: Grant): void {
    const list = this.grants.get(g.key);
    if (!list) return;
    const i = list.indexOf(g);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.grants.delete(g.key);
  }

  private giveBack(g: Grant): void {
    this.remove(g);
    if (g.returned) return;
    g.returned = true;
    let merged: string[] = [];
    if (g.deferred.length > 0) {
      this.counters.flushedReleases += g.deferred.length;
      merged = this.keyPool.sendDeferred(g.deferred.splice(0));
    }
    const from = g.used + 1;
    // taking a unit and giving back are both synchronous here: a unit handed out is never given back
    g.used = g.block;
    if (from > g.block && merged.length === 0) return;
    const names = this.keyPool.grantKeyNames(g.lease);
    const keys = [names.rpm, names.inf];
    const args: (string | number)[] = [
      g.lease.leaseId,
      from,
      g.block,
      names.rpmKind,
      g.atMs,
      RPM_LOG_TTL_MS,
      KEY_BUCKET_MS,
      g.member,
      merged.length,
      ...merged,
    ];
    for (const p of g.policies) {
      if (!BLOCK_KINDS.has(p.kind) || p.cost !== 1) continue;
      keys.push(p.keys[0]!);
      args.push(p.kind, p.windowMs);
    }
    this.counters.returns++;
    this.counters.returnedUnits += Math.max(0, g.block - from + 1);
    const sending: Promise<void> = this.store
      .run(grantReturnScript, keys, args.map(String))
      .then(() => undefined)
      .catch((err: unknown) =>
        // what it held expires with the windows and the leases' deadline (docs/scaling.md)
        this.logger.warn(`giving back a local admission grant failed: ${(err as Error).message}`),
      )
      .finally(() => this.returning.delete(sending));
    this.returning.add(sending);
  }
}
