import {
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
  OnApplicationShutdown,
  OnModuleInit,
} from '@nestjs/common';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import { INVALIDATE_CHANNEL, KeyPoolService } from '../../key-pool/services/key-pool.service.js';
import type {
  CandidateKeyInfo,
  ConcurrencyLimit,
  ConcurrencyPolicy,
  KeyLease,
  KeyOutcome,
  ReportContributor,
  ReportResult,
} from '../../key-pool/key-pool.types.js';
import { FloodgateMetrics } from '../../metrics/floodgate-metrics.js';
import { AtomicStore, type ScriptValue } from '../../state/atomic-store.js';
import { PubSub, type Unsubscribe } from '../../state/pub-sub.js';
import type { AdaptiveKeyState, StoredAdjustment } from '../infrastructure/adaptive-key-state.entity.js';
import {
  AdaptiveStateRepository,
  type TransactionManager,
} from '../infrastructure/adaptive-state.repository.js';
import {
  decodeLearn,
  encodeLearn,
  learnKeys,
  learnScript,
  learnSnapshotScript,
  parseSnapshots,
  RETREAT_GATE,
  retreatSnapshotScript,
  retreatStateKey,
  retreatWindowKey,
  type FixedShapeGate,
  type KeySnapshot,
  type LearnOp,
  type LearnReply,
} from '../infrastructure/adaptive.scripts.js';
import {
  ADAPTIVE_REPORT,
  decodeReport,
  encodeReport,
  retreatArgv,
  retreatRecordScript,
  type RecordResult,
  type RetreatArgs,
} from '../infrastructure/report.script.js';
import { parseHistory, UtilisationWindow, type Adjustment } from '../domain/aimd.js';
import { classify429, type Classification, type Upstream429Type } from '../domain/classify-429.js';
import { isRetreatPushback } from '../domain/pushback.js';
import {
  bucketParams,
  RETREAT_STATES,
  type RetreatEvent,
  type RetreatStateName,
} from '../domain/retreat-machine.js';

/** The retreat bucket as the relay composes it into admission (a `StaticGate` + per-provider inputs). */
export interface RetreatGateContribution {
  gate: FixedShapeGate;
  /** Cheap and synchronous: the provider's rpm/burst are cached in process. */
  inputs(providerId: string): { keys: string[]; args: (string | number)[] };
}

/** /api/admin/status's retreat fields (seed 004) for one provider. */
export interface RetreatStatus {
  state: RetreatStateName;
  /** base × factor; null when the provider has no rpm and is not retreating (no bucket). */
  effective_rpm: number | null;
  base_rpm: number | null;
  /** 429s (rate and unknown kinds) ÷ answers in the window, 0-1. */
  upstream_429_rate: number;
  /** When the current state began (ISO-8601), null when it never changed. */
  since: string | null;
  factor: number;
  window_answers: number;
  window_429s: number;
}

export interface TokenBucketStatus {
  capacity: number;
  tokens: number;
  refill_per_second: number;
}

/** One learned-limit change, for status pages (newest first). */
export interface AdjustmentRecord {
  at: string;
  provider_id: string;
  key_id: string;
  old_limit: number;
  new_limit: number;
  reason: string;
  in_flight: number;
}

/** A key's learned state as the admin API reads it (store first, Postgres when the store has nothing). */
export interface KeyLearning {
  learnedLimit: number | null;
  concurrency429: number;
  rpm429: number;
  tpm429: number;
  unknown429: number;
  last429At: Date | null;
  last429Type: string | null;
  /** Oldest first, at most 20. */
  adjustments: Adjustment[];
}

/** What this instance knows about a key (a cache; the store is authoritative). */
interface KeyView {
  providerId: string;
  /** The learned limit; null = not learned (the initial limit applies). */
  learned: number | null;
  holdUntilMs: number;
  boundary: number | null;
  lastConcurrency429Ms: number;
  lastProbeMs: number;
  samples: UtilisationWindow;
  busy: boolean;
}

/** What Adaptive's report contribution does for one answer (decided before the release script). */
interface ReportPlan {
  kind: 'none' | '429' | 'inc';
  type?: Upstream429Type;
  reason?: 'high_utilisation' | 'probe';
  /** The answer is pushback for the retreat window: a rate 429, or a 503 / 529 overload (domain/pushback.ts). */
  rate429: boolean;
  /** The report carries the provider's pending answers into the retreat window. */
  carries?: boolean;
  /** Resolves the promise idle() waits for. */
  done: () => void;
}

/** How long answers that no report carried wait for one before they go into the window on their own. */
const RETREAT_FLUSH_MS = 20;

const RESET_CHANNEL = 'adaptive:reset';
const RETREAT_CODE: Record<RetreatStateName, number> = { normal: 0, retreat: 1, recover: 2 };

/**
 * Adaptive concurrency and the retreat bucket (docs/adaptive.md).
 *
 * - Installs KeyPool's concurrency policy: `max_concurrent` null → `learned` (the selection script
 *   reads the shared learned limit, field `cl`, in the same atomic step), a number → fixed.
 * - Listens to every KeyPool report: classifies upstream 429s, lowers the learned limit on
 *   concurrency 429s (AIMD), raises it on sustained high utilisation or a slow probe, feeds the
 *   provider's sliding window of answers and runs the retreat state machine.
 * - `retreatGate()`: the provider token bucket (base × retreat factor, shared) as an admission gate
 *   for the relay.
 * - Persists learned state to Postgres in batches and reloads it into the store at start.
 */
@Injectable()
export class AdaptiveService implements OnModuleInit, OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('Adaptive');
  private readonly views = new Map<string, KeyView>();
  private readonly classifications = new WeakMap<KeyOutcome, Classification>();
  /** keyId → providerId of keys this instance changed since the last flush (persisted). */
  private readonly dirty = new Map<string, string>();
  /** keyId → providerId of keys this instance served since the last flush (views refreshed). */
  private readonly touched = new Map<string, string>();
  private readonly providers = new Map<string, { name: string; rpm: number | null; burst: number | null }>();
  private providersLoading: Promise<void> | null = null;
  private providersStale = false;
  private providersLoadedAt = 0;
  /** What `reportInputs` decided for a lease, for `reportSettled`. */
  private readonly plans = new WeakMap<KeyLease, ReportPlan>();
  /** providerId → answers not yet in the provider's retreat window (waiting for a report to carry them). */
  private readonly retreatPending = new Map<string, { n: number; e: number }>();
  /** providerId → reports (or flushes) of this instance carrying the provider's answers right now. */
  private readonly retreatCarrying = new Map<string, number>();
  /** providerId → the timer that records pending answers on their own when no report takes them. */
  private readonly retreatFlushes = new Map<string, NodeJS.Timeout>();
  private readonly pending = new Set<Promise<void>>();
  private readonly unsubscribes: Unsubscribe[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | null = null;
  private readonly gateContribution: RetreatGateContribution;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly keyPool: KeyPoolService,
    @Inject(AtomicStore) private readonly store: AtomicStore,
    @Inject(PubSub) private readonly pubsub: PubSub,
    private readonly metrics: FloodgateMetrics,
    private readonly states: AdaptiveStateRepository,
  ) {
    this.gateContribution = {
      gate: RETREAT_GATE,
      inputs: (providerId) => this.retreatInputs(providerId),
    };
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  async onModuleInit(): Promise<void> {
    this.keyPool.useConcurrencyPolicy(this.policy);
    this.keyPool.useReportContributor(this.contributor);
    this.unsubscribes.push(
      await this.pubsub.subscribe(INVALIDATE_CHANNEL, () => void this.refreshProviders('write')),
      await this.pubsub.subscribe(RESET_CHANNEL, (keyId) => this.views.delete(keyId)),
    );
    this.metrics.onCollect(() => this.collectMetrics());
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.loadPersisted();
    await this.refreshProviders();
    this.flushTimer = setInterval(() => void this.flush(), this.config.adaptive.flushMs);
    this.flushTimer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.flushTimer) clearInterval(this.flushTimer);
    this.keyPool.useReportContributor(null);
    await this.idle();
    await this.flush();
    for (const u of this.unsubscribes.splice(0)) await u().catch(() => undefined);
  }

  // ---- KeyPool policy -------------------------------------------------------------------------

  private readonly policy: ConcurrencyPolicy = {
    limitFor: (key: CandidateKeyInfo): ConcurrencyLimit => {
      if (key.maxConcurrent !== null) return { kind: 'fixed', limit: key.maxConcurrent };
      // The store's shared value wins inside the script; `initial` covers a store that lost it.
      return {
        kind: 'learned',
        initial: this.views.get(key.keyId)?.learned ?? this.config.adaptive.initialLimit,
      };
    },
    coolDownOn429: (lease, outcome) => {
      // A concurrency 429 on an adaptive key is answered by a lower learned limit, not by a rest
      // (KeyPool's default would take the key out for 60 s) — unless the limit is already at its
      // minimum: going lower cannot help, so the key rests. Fixed keys keep KeyPool's cooldown.
      return !(
        lease.concurrencyLimit.kind === 'learned' &&
        (this.limitOf(lease) ?? 0) > this.config.adaptive.minLimit &&
        this.classify(lease, outcome).type === 'concurrency'
      );
    },
  };

  /** The limit enforced for a lease (learned as far as this instance knows, or fixed), null = none. */
  private limitOf(lease: KeyLease): number | null {
    const c = lease.concurrencyLimit;
    if (c.kind === 'fixed') return c.limit;
    if (c.kind === 'learned') return this.views.get(lease.keyId)?.learned ?? c.initial;
    return null;
  }

  classify(lease: KeyLease, outcome: KeyOutcome): Classification {
    let c = this.classifications.get(outcome);
    if (!c) {
      c = classify429({
        headers: outcome.headers,
        error: outcome.upstreamError,
        inFlight: lease.inFlight,
        limit: this.limitOf(lease),
        longRetryAfterMs: this.config.adaptive.longRetryAfterMs,
        nowMs: Date.now(),
      });
      this.classifications.set(outcome, c);
    }
    return c;
  }

  // ---- outcomes: Adaptive's report contribution ------------------------------------------------
  //
  // Every upstream answer is recorded in the same atomic step as KeyPool's release (one store round
  // trip per answer): `reportInputs` runs before the release script and decides what this answer
  // adds — one answer (and whether it is a rate 429) to the provider's retreat window, and the
  // key's learning step when the answer calls for one (a 429; an increase the utilisation samples
  // decided) — and `reportSettled` reads the reply after it.

  private readonly contributor: ReportContributor = {
    contribution: ADAPTIVE_REPORT,
    inputs: (lease, outcome) => this.reportInputs(lease, outcome),
    settled: (lease, _outcome, result, output) => this.reportSettled(lease, result, output),
  };

  private reportInputs(
    lease: KeyLease,
    outcome: KeyOutcome,
  ): { keys: string[]; args: (string | number)[] } | null {
    if (outcome.notSent || outcome.status === undefined) return null;
    this.touched.set(lease.keyId, lease.providerId);
    const a = this.config.adaptive;
    const initial =
      lease.concurrencyLimit.kind === 'learned' ? lease.concurrencyLimit.initial : a.initialLimit;
    const plan: ReportPlan = { kind: 'none', rate429: false, done: () => undefined };
    let learn: LearnOp | null = null;
    if (outcome.status === 429) {
      const c = this.classify(lease, outcome);
      // Concurrency 429s belong to the key's learned limit, not to the provider's request rate.
      plan.rate429 = isRetreatPushback(429, c.type);
      plan.kind = '429';
      plan.type = c.type;
      this.view(lease.keyId, lease.providerId).samples.reset();
      // The upstream counted every request in flight when it refused, including those that took
      // their slot after this one (arrival order upstream is not slot order): the script raises
      // this count at acquisition to the count after the release + 1 when that is larger.
      learn = {
        op: '429',
        type: c.type,
        inFlight: lease.inFlight,
        learned: lease.concurrencyLimit.kind === 'learned',
        initial,
        decreasePermille: Math.round(a.decreaseFactor * 1000),
        unknownPermille: Math.round(a.unknownDecreaseFactor * 1000),
        holdMs: a.holdMs,
        minLimit: a.minLimit,
      };
    } else if (isRetreatPushback(outcome.status, null)) {
      // 503 / 529 (overloaded): the provider pushes back; its retreat window counts it like a rate 429.
      plan.rate429 = true;
    } else if (outcome.status < 400 && lease.concurrencyLimit.kind === 'learned') {
      const inc = this.sample(lease);
      if (inc) {
        plan.kind = 'inc';
        plan.reason = inc.reason;
        learn = {
          op: 'inc',
          expected: inc.expected,
          reason: inc.reason,
          inFlight: lease.inFlight,
          initial,
          maxLimit: a.maxLimit,
          probeIntervalMs: a.probeIntervalMs,
          slowStartPermille: Math.round(a.slowStartFactor * 1000),
        };
      }
    }
    // The answer joins the provider's pending answers; a report carries them all into the window
    // unless another report of this instance is already carrying the provider's answers (then
    // they wait for the next one: under load the window is updated once per round trip, not once
    // per answer) — a learning step always goes, taking the pending answers along.
    const pending = this.retreatPending.get(lease.providerId) ?? { n: 0, e: 0 };
    pending.n++;
    if (plan.rate429) pending.e++;
    this.retreatPending.set(lease.providerId, pending);
    if (!learn && (this.retreatCarrying.get(lease.providerId) ?? 0) > 0) return null;
    this.retreatPending.delete(lease.providerId);
    this.retreatCarrying.set(lease.providerId, (this.retreatCarrying.get(lease.providerId) ?? 0) + 1);
    plan.carries = true;
    const inputs = encodeReport({
      providerId: lease.providerId,
      keyId: lease.keyId,
      answers: pending.n,
      rate429s: pending.e,
      retreat: this.retreatArgs(lease.providerId),
      learn,
    });
    // idle() waits for the report to settle
    this.track(new Promise<void>((resolve) => (plan.done = resolve)));
    this.plans.set(lease, plan);
    return inputs;
  }

  private retreatArgs(providerId: string): RetreatArgs {
    const r = this.config.retreat;
    return {
      windowMs: r.windowMs,
      minSamples: r.minSamples,
      enterPermyriad: Math.round(r.enterRate * 10000),
      exitPermyriad: Math.round(r.exitRate * 10000),
      holdMs: r.holdMs,
      factorPermille: Math.round(r.factor * 1000),
      minFactorPermille: Math.round(r.minFactor * 1000),
      stepPermille: Math.round(r.recoverStep * 1000),
      stepMs: r.recoverStepMs,
      baseRpm: this.providers.get(providerId)?.rpm ?? 0,
      enabled: r.enabled,
    };
  }

  /** One provider's carrying report settled (or a flush ran): pending answers go with the next report, or on their own. */
  private retreatCarried(providerId: string): void {
    const left = (this.retreatCarrying.get(providerId) ?? 1) - 1;
    if (left > 0) this.retreatCarrying.set(providerId, left);
    else this.retreatCarrying.delete(providerId);
    if (left > 0 || !this.retreatPending.has(providerId) || this.retreatFlushes.has(providerId)) return;
    // Nobody carries them yet: a report arriving within RETREAT_FLUSH_MS takes them along; if none
    // comes, they go into the window on their own (the retreat recorder: report.lua without learning).
    let done!: () => void;
    this.track(new Promise<void>((resolve) => (done = resolve)));
    const timer = setTimeout(() => {
      this.retreatFlushes.delete(providerId);
      const acc = this.retreatPending.get(providerId);
      if (!acc || this.retreatCarrying.has(providerId)) return done();
      this.retreatPending.delete(providerId);
      this.retreatCarrying.set(providerId, 1);
      this.track(
        this.store
          .run(
            retreatRecordScript,
            [retreatStateKey(providerId), retreatWindowKey(providerId)],
            retreatArgv(acc.n, acc.e, this.retreatArgs(providerId)),
          )
          .then((res) => {
            const name = this.providers.get(providerId)?.name ?? providerId;
            if (res[4]) this.logTransition(name, providerId, res);
          })
          .finally(() => {
            this.retreatCarried(providerId);
            done();
          }),
      );
    }, RETREAT_FLUSH_MS);
    this.retreatFlushes.set(providerId, timer);
  }

  private reportSettled(lease: KeyLease, result: ReportResult, output: ScriptValue | null): void {
    const plan = this.plans.get(lease);
    if (!plan) return;
    this.plans.delete(lease);
    const v = this.view(lease.keyId, lease.providerId);
    try {
      if (plan.kind === '429')
        this.metrics.upstream429.inc({ provider: lease.providerName, key_id: lease.keyId, type: plan.type! });
      // null: the store failed (KeyPool logged it and keeps the lease in its ledger); this answer is
      // missing from the window and the learning step did not run.
      const reply = output === null ? null : decodeReport(output);
      if (reply?.retreat[4]) this.logTransition(lease.providerName, lease.providerId, reply.retreat);
      const r = reply?.learn ?? null;
      if (!r) return;
      const a = this.config.adaptive;
      if (plan.kind === '429') {
        const inFlight = Math.max(lease.inFlight, result.inFlight + 1);
        this.dirty.set(lease.keyId, lease.providerId);
        if (plan.type === 'concurrency') {
          v.lastConcurrency429Ms = Date.now();
          v.boundary = v.boundary === null ? inFlight : Math.min(v.boundary, inFlight);
        }
        if (r.changed) {
          v.learned = r.next;
          v.holdUntilMs = Date.now() + a.holdMs;
          this.adjusted(lease, r, 'decrease', inFlight);
        }
      } else if (plan.kind === 'inc') {
        if (r.changed) {
          v.learned = r.next;
          if (plan.reason === 'probe') {
            v.lastProbeMs = Date.now();
            v.boundary = null;
          }
          this.dirty.set(lease.keyId, lease.providerId);
          this.adjusted(lease, r, 'increase', lease.inFlight);
        } else if (r.code === 'stale') {
          v.learned = r.old;
        } else if (r.code === 'quiet_period') {
          // Another instance probed or saw a concurrency 429: the next snapshot refresh tells when.
          v.lastProbeMs = Date.now();
        }
      }
    } finally {
      if (plan.kind === 'inc') {
        v.busy = false;
        v.samples.reset();
      }
      if (plan.carries) this.retreatCarried(lease.providerId);
      plan.done();
    }
  }

  private view(keyId: string, providerId: string): KeyView {
    let v = this.views.get(keyId);
    if (!v) {
      v = {
        providerId,
        learned: null,
        holdUntilMs: 0,
        boundary: null,
        lastConcurrency429Ms: 0,
        lastProbeMs: 0,
        samples: new UtilisationWindow(this.config.adaptive.sampleSize),
        busy: false,
      };
      this.views.set(keyId, v);
    }
    return v;
  }

  /**
   * A successful answer on an adaptive key: a utilisation sample. Returns the increase to ask the
   * store for (compare-and-set on `expected`) when the samples call for one, and marks the key busy
   * until the report settles.
   */
  private sample(lease: KeyLease): { expected: number; reason: 'high_utilisation' | 'probe' } | null {
    const a = this.config.adaptive;
    const v = this.view(lease.keyId, lease.providerId);
    const limit =
      v.learned ??
      (lease.concurrencyLimit.kind === 'learned' ? lease.concurrencyLimit.initial : a.initialLimit);
    // A sample judges the limit in force when its slot was taken (the policy hands the view's
    // limit to the lease as `initial`): answers to requests admitted under another limit say
    // nothing about this one — right after a doubling they would all look half idle.
    if (lease.concurrencyLimit.kind === 'learned' && lease.concurrencyLimit.initial !== limit) return null;
    v.samples.add(lease.inFlight, limit);
    if (v.busy || limit >= a.maxLimit) return null;
    const decision = v.samples.decision(a.utilisationThreshold, a.highUtilisationShare);
    if (!decision) return null;
    const now = Date.now();
    let reason: 'high_utilisation' | 'probe' | null = null;
    if (
      decision === 'high_utilisation' &&
      now >= v.holdUntilMs &&
      (v.boundary === null || limit + 1 < v.boundary)
    ) {
      reason = 'high_utilisation';
    } else if (
      now - v.lastConcurrency429Ms >= a.probeIntervalMs &&
      now - v.lastProbeMs >= a.probeIntervalMs &&
      now - v.samples.lastProbeAttemptMs >= Math.max(1000, a.probeIntervalMs / 10)
    ) {
      reason = 'probe';
      v.samples.lastProbeAttemptMs = now;
    }
    if (!reason) return null;
    v.busy = true;
    return { expected: limit, reason };
  }

  private adjusted(
    lease: KeyLease,
    r: LearnReply,
    direction: 'increase' | 'decrease',
    inFlight: number,
  ): void {
    this.metrics.adaptiveAdjustments.inc({ provider: lease.providerName, key_id: lease.keyId, direction });
    const text = `upstream key "${lease.keyLabel}" (${lease.keyId}) of provider ${lease.providerName}: learned concurrency limit ${r.old} → ${r.next} (${r.code}, ${inFlight} in flight)`;
    if (direction === 'decrease') this.logger.warn(text);
    else this.logger.log(text);
  }

  /** Resolves once the learning and retreat steps started so far have finished (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  private track(p: Promise<void>): void {
    const guarded = p.catch((err: unknown) => this.logger.error({ err }, 'adaptive learning step failed'));
    this.pending.add(guarded);
    void guarded.finally(() => this.pending.delete(guarded));
  }

  // ---- retreat bucket ---------------------------------------------------------------------------

  /**
   * The provider token bucket with its retreat factor, as an admission gate for KeyPool's selection
   * script (fixed shape: 1 key, 3 args). The relay composes it: `admission.contribute(adaptive.retreatGate())`.
   */
  retreatGate(): RetreatGateContribution {
    return this.gateContribution;
  }

  private retreatInputs(providerId: string): { keys: string[]; args: (string | number)[] } {
    const p = this.providers.get(providerId);
    if (!p) void this.refreshProviders('miss');
    return {
      keys: [retreatStateKey(providerId)],
      args: [p?.rpm ?? 0, p?.burst ?? 0, this.config.retreat.enabled ? 1 : 0],
    };
  }

  /**
   * Reloads the providers' rpm/burst cache (at start, on every KeyPool invalidation via pub/sub, and
   * when the gate meets an unknown provider — at most once a second for those). A reload asked for
   * while one runs starts again when it ends, so a write is never missed.
   */
  refreshProviders(reason: 'write' | 'miss' = 'write'): Promise<void> {
    if (reason === 'miss' && (this.providersLoading || Date.now() - this.providersLoadedAt < 1000))
      return this.providersLoading ?? Promise.resolve();
    if (this.providersLoading) {
      this.providersStale = true;
      return this.providersLoading;
    }
    const p = this.keyPool
      .routableProviders()
      .then((list) => {
        this.providers.clear();
        for (const r of list) this.providers.set(r.id, { name: r.name, rpm: r.rpm, burst: r.burst });
        this.providersLoadedAt = Date.now();
      })
      .catch((err: unknown) => this.logger.error({ err }, 'loading providers for the retreat bucket failed'))
      .finally(() => {
        this.providersLoading = null;
        if (this.providersStale) {
          this.providersStale = false;
          void this.refreshProviders();
        }
      });
    this.providersLoading = p;
    return p;
  }

  private logTransition(name: string, providerId: string, r: RecordResult): void {
    const [st, f, n, e, event, prev, base, accepted] = r;
    const from = RETREAT_STATES[prev] ?? 'normal';
    const to = RETREAT_STATES[st] ?? 'normal';
    const rate = n > 0 ? ((e / n) * 100).toFixed(1) : '0.0';
    const eff = Math.round((base * f) / 100) / 10;
    const numbers = `upstream 429 rate ${rate}% (${e}/${n} answers in ${this.config.retreat.windowMs} ms), effective rate ${eff} rpm = ${(f / 10).toFixed(1)}% of base ${base} rpm${event === 'enter' || event === 'cut' || event === 'retreat' ? `, upstream accepted ≈ ${accepted} rpm` : ''}`;
    const labels: Record<Exclude<RetreatEvent, ''>, string> = {
      enter: `${from.toUpperCase()} → ${to.toUpperCase()}`,
      retreat: `${from.toUpperCase()} → ${to.toUpperCase()}`,
      recover: `${from.toUpperCase()} → ${to.toUpperCase()}`,
      normal: `${from.toUpperCase()} → ${to.toUpperCase()}`,
      disabled: `${from.toUpperCase()} → NORMAL (retreat disabled)`,
      cut: 'RETREAT deeper',
      step: 'RECOVER step',
    };
    const text = `provider ${name} (${providerId}) retreat: ${labels[event as Exclude<RetreatEvent, ''>] ?? event}; ${numbers}`;
    if (event === 'step') this.logger.log(text);
    else this.logger.warn(text);
  }

  /** Seed 004's /status retreat fields for a provider (one store round trip). */
  async retreatStatus(providerId: string): Promise<RetreatStatus> {
    const raw = await this.store.run(
      retreatSnapshotScript,
      [retreatStateKey(providerId), retreatWindowKey(providerId)],
      [this.config.retreat.windowMs],
    );
    const st = Number(raw[0]) || 0;
    const f = this.config.retreat.enabled && st !== 0 ? Number(raw[1]) || 1000 : 1000;
    const state: RetreatStateName = this.config.retreat.enabled ? (RETREAT_STATES[st] ?? 'normal') : 'normal';
    const n = Number(raw[2]) || 0;
    const e = Number(raw[3]) || 0;
    const since = Number(raw[4]) || 0;
    const ob = Number(raw[5]) || 0;
    const rpm = this.providers.get(providerId)?.rpm ?? null;
    const base = rpm ?? (state !== 'normal' && ob > 0 ? ob : null);
    return {
      state,
      effective_rpm: base === null ? null : Math.round((base * f) / 100) / 10,
      base_rpm: base,
      upstream_429_rate: n > 0 ? Math.round((e / n) * 10000) / 10000 : 0,
      since: since > 0 ? new Date(since).toISOString() : null,
      factor: f / 1000,
      window_answers: n,
      window_429s: e,
    };
  }

  /** The provider's shared token bucket now (capacity, tokens, refill per second); null = no bucket. */
  async tokenBucket(providerId: string): Promise<TokenBucketStatus | null> {
    const raw = await this.store.run(
      retreatSnapshotScript,
      [retreatStateKey(providerId), retreatWindowKey(providerId)],
      [this.config.retreat.windowMs],
    );
    const p = this.providers.get(providerId);
    const enabled = this.config.retreat.enabled;
    const st = enabled ? Number(raw[0]) || 0 : 0;
    const b = bucketParams(
      p?.rpm ?? 0,
      p?.burst ?? 0,
      st,
      st !== 0 ? Number(raw[1]) || 1000 : 1000,
      Number(raw[5]) || 0,
    );
    if (!b) return null;
    const now = Number(raw[8]);
    let tokens = raw[6] === '' ? b.cap : Number(raw[6]);
    if (raw[7] !== '' && now > Number(raw[7])) tokens += (now - Number(raw[7])) * b.ratePerMs;
    tokens = Math.min(b.cap, tokens);
    return {
      capacity: b.cap,
      tokens: Math.round(tokens * 100) / 100,
      refill_per_second: Math.round(b.ratePerMs * 1000 * 1000) / 1000,
    };
  }

  // ---- learned state: reads, admin writes --------------------------------------------------------

  /** Learned limits (null = not learned) of some keys of a provider, from the shared store. */
  async learnedLimits(providerId: string, keyIds: readonly string[]): Promise<Map<string, number | null>> {
    const snaps = await this.snapshots(providerId, keyIds);
    return new Map(keyIds.map((id, i) => [id, snaps[i]!.cl === '' ? null : Number(snaps[i]!.cl)]));
  }

  /** The learned state of keys (store; Postgres for keys the store knows nothing about). */
  async learning(keys: readonly { keyId: string; providerId: string }[]): Promise<Map<string, KeyLearning>> {
    const out = new Map<string, KeyLearning>();
    const byProvider = new Map<string, string[]>();
    for (const k of keys) byProvider.set(k.providerId, [...(byProvider.get(k.providerId) ?? []), k.keyId]);
    const missing: string[] = [];
    for (const [providerId, ids] of byProvider) {
      const snaps = await this.snapshots(providerId, ids);
      ids.forEach((id, i) => {
        const s = snaps[i]!;
        if (s.v === '' && s.cl === '') missing.push(id);
        else out.set(id, learningFromSnapshot(s));
      });
    }
    if (missing.length > 0) {
      const rows = await this.states.ofKeys(missing);
      const byId = new Map(rows.map((r) => [r.keyId, r]));
      for (const id of missing) {
        const r = byId.get(id);
        out.set(id, r ? learningFromRow(r) : emptyLearning());
      }
    }
    return out;
  }

  /** Forgets a key's learned value, 429 counters and adjustment history (its mode stays). */
  /** Resets a key's learning; the Postgres row is written with `manager` (the caller's audited transaction). */
  async resetLearning(providerId: string, keyId: string, manager: TransactionManager): Promise<void> {
    const r = decodeLearn(
      await this.store.run(learnScript, learnKeys(providerId, keyId), encodeLearn({ op: 'reset' })),
    );
    this.views.delete(keyId);
    this.dirty.delete(keyId);
    await this.states.resetKeyState(keyId, r.version, manager);
    await this.pubsub.publish(RESET_CHANNEL, keyId).catch(() => undefined);
    this.logger.log(`learning of upstream key ${keyId} reset (learned limit, 429 counters, history)`);
  }

  /** The most recent adjustments across all keys (newest first), for status pages. */
  async recentAdjustments(limit = 10): Promise<AdjustmentRecord[]> {
    const settings = await this.keyPool.concurrencySettings();
    const learning = await this.learning(settings);
    const out: AdjustmentRecord[] = [];
    for (const s of settings) {
      for (const a of learning.get(s.keyId)?.adjustments ?? []) {
        out.push({
          at: new Date(a.atMs).toISOString(),
          provider_id: s.providerId,
          key_id: s.keyId,
          old_limit: a.old,
          new_limit: a.new,
          reason: a.reason,
          in_flight: a.inFlight,
        });
      }
    }
    return out.sort((x, y) => (x.at < y.at ? 1 : x.at > y.at ? -1 : 0)).slice(0, limit);
  }

  private async snapshots(providerId: string, keyIds: readonly string[]): Promise<KeySnapshot[]> {
    if (keyIds.length === 0) return [];
    const flat = await this.store.run(
      learnSnapshotScript,
      keyIds.flatMap((id) => learnKeys(providerId, id)),
      [],
    );
    return parseSnapshots(flat, keyIds.length);
  }

  // ---- persistence ------------------------------------------------------------------------------

  /**
   * Writes the learned state of every key this instance changed since the last flush (one store
   * round trip and one statement per provider), and refreshes this instance's views of the keys it
   * served. Runs every ADAPTIVE_FLUSH_MS and at shutdown.
   */
  flush(): Promise<void> {
    if (!this.flushing) {
      this.flushing = this.doFlush()
        .catch((err: unknown) =>
          this.logger.error({ err }, 'persisting adaptive state failed; retrying next flush'),
        )
        .finally(() => (this.flushing = null));
    }
    return this.flushing;
  }

  private async doFlush(): Promise<void> {
    const dirty = new Map(this.dirty);
    this.dirty.clear();
    const keys = new Map([...this.touched, ...dirty]);
    this.touched.clear();
    const byProvider = new Map<string, string[]>();
    for (const [keyId, providerId] of keys)
      byProvider.set(providerId, [...(byProvider.get(providerId) ?? []), keyId]);
    for (const [providerId, ids] of byProvider) {
      let snaps: KeySnapshot[];
      try {
        snaps = await this.snapshots(providerId, ids);
      } catch (err) {
        // every dirty key of this flush stays dirty, not only this provider's (rewriting one already
        // written is a no-op: the upsert is version-guarded)
        for (const [id, p] of dirty) if (!this.dirty.has(id)) this.dirty.set(id, p);
        throw err;
      }
      const records: Record<string, unknown>[] = [];
      ids.forEach((id, i) => {
        const s = snaps[i]!;
        this.refreshView(id, providerId, s);
        if (dirty.has(id) && s.v !== '') records.push(rowFromSnapshot(id, providerId, s));
      });
      if (records.length === 0) continue;
      try {
        await this.states.upsertSnapshots(records);
      } catch (err) {
        // every dirty key of this flush stays dirty, not only this provider's (rewriting one already
        // written is a no-op: the upsert is version-guarded)
        for (const [id, p] of dirty) if (!this.dirty.has(id)) this.dirty.set(id, p);
        throw err;
      }
    }
  }

  private refreshView(keyId: string, providerId: string, s: KeySnapshot): void {
    const v = this.view(keyId, providerId);
    if (v.busy) return;
    const learned = s.cl === '' ? null : Number(s.cl);
    if (learned !== v.learned) v.samples.reset();
    v.learned = learned;
    v.holdUntilMs = num(s.hold);
    v.boundary = s.bd === '' ? null : Number(s.bd);
    v.lastConcurrency429Ms = num(s.lc);
    v.lastProbeMs = Math.max(v.lastProbeMs, num(s.lp));
  }

  /** Start-up: the durable copy goes into the store wherever the store knows nothing newer. */
  private async loadPersisted(): Promise<void> {
    let rows: AdaptiveKeyState[];
    try {
      rows = await this.states.all();
    } catch (err) {
      this.logger.error({ err }, 'loading learned concurrency limits failed; starting from the store alone');
      return;
    }
    let loaded = 0;
    for (const r of rows) {
      const history = (r.adjustments ?? [])
        .map((a) => `${Date.parse(a.timestamp)}|${a.old_limit}|${a.new_limit}|${a.reason}|${a.in_flight}`)
        .join(';');
      try {
        const res = decodeLearn(
          await this.store.run(
            learnScript,
            learnKeys(r.providerId, r.keyId),
            encodeLearn({
              op: 'load',
              version: Number(r.version),
              learned: r.learnedLimit,
              c: r.concurrent429Count,
              r: r.rpm429Count,
              t: r.tpm429Count,
              u: r.unknown429Count,
              l4: r.last429At ? r.last429At.getTime() : null,
              lt: r.last429Type,
              lc: r.lastConcurrency429At ? r.lastConcurrency429At.getTime() : null,
              bd: r.boundary,
              lp: r.lastProbeAt ? r.lastProbeAt.getTime() : null,
              history,
            }),
          ),
        );
        if (res.changed) loaded++;
      } catch (err) {
        this.logger.error({ err, key_id: r.keyId }, 'reloading a learned limit into the store failed');
      }
      const v = this.view(r.keyId, r.providerId);
      v.learned = r.learnedLimit;
      v.boundary = r.boundary;
      v.lastConcurrency429Ms = r.lastConcurrency429At?.getTime() ?? 0;
      v.lastProbeMs = r.lastProbeAt?.getTime() ?? 0;
    }
    if (rows.length > 0)
      this.logger.log(
        `learned concurrency state of ${rows.length} upstream keys read from Postgres (${loaded} loaded into the store)`,
      );
  }

  // ---- metrics ----------------------------------------------------------------------------------

  private async collectMetrics(): Promise<void> {
    const m = this.metrics;
    const settings = await this.keyPool.concurrencySettings();
    const byProvider = new Map<string, typeof settings>();
    for (const s of settings) byProvider.set(s.providerId, [...(byProvider.get(s.providerId) ?? []), s]);
    const limits: [string, string, string, number][] = [];
    const inFlight: [string, string, number][] = [];
    for (const [providerId, keys] of byProvider) {
      const ids = keys.map((k) => k.keyId);
      const [windows, learned] = await Promise.all([
        this.keyPool.windows(providerId, ids),
        this.learnedLimits(providerId, ids),
      ]);
      keys.forEach((k, i) => {
        const limit = k.maxConcurrent ?? learned.get(k.keyId) ?? this.config.adaptive.initialLimit;
        limits.push([k.providerName, k.keyId, k.maxConcurrent === null ? 'adaptive' : 'fixed', limit]);
        inFlight.push([k.providerName, k.keyId, windows[i]?.inFlight ?? 0]);
      });
    }
    const providers = await this.keyPool.routableProviders();
    const retreat = await Promise.all(
      providers.map(async (p) => [p.name, await this.retreatStatus(p.id)] as const),
    );
    m.keyLimit.reset();
    m.keyInFlight.reset();
    for (const [p, k, mode, v] of limits) m.keyLimit.labels(p, k, mode).set(v);
    for (const [p, k, v] of inFlight) m.keyInFlight.labels(p, k).set(v);
    m.retreatState.reset();
    m.retreatEffectiveRpm.reset();
    m.upstream429Rate.reset();
    for (const [name, s] of retreat) {
      m.retreatState.labels(name).set(RETREAT_CODE[s.state]);
      if (s.effective_rpm !== null) m.retreatEffectiveRpm.labels(name).set(s.effective_rpm);
      m.upstream429Rate.labels(name).set(s.upstream_429_rate);
    }
  }
}

// ---- conversions ----------------------------------------------------------------------------------

function num(v: string): number {
  const n = Number(v);
  return v === '' || Number.isNaN(n) ? 0 : n;
}

function emptyLearning(): KeyLearning {
  return {
    learnedLimit: null,
    concurrency429: 0,
    rpm429: 0,
    tpm429: 0,
    unknown429: 0,
    last429At: null,
    last429Type: null,
    adjustments: [],
  };
}

function learningFromSnapshot(s: KeySnapshot): KeyLearning {
  return {
    learnedLimit: s.cl === '' ? null : Number(s.cl),
    concurrency429: num(s.c),
    rpm429: num(s.r),
    tpm429: num(s.t),
    unknown429: num(s.u),
    last429At: s.l4 === '' ? null : new Date(Number(s.l4)),
    last429Type: s.lt === '' ? null : s.lt,
    adjustments: parseHistory(s.h),
  };
}

function learningFromRow(r: AdaptiveKeyState): KeyLearning {
  return {
    learnedLimit: r.learnedLimit,
    concurrency429: r.concurrent429Count,
    rpm429: r.rpm429Count,
    tpm429: r.tpm429Count,
    unknown429: r.unknown429Count,
    last429At: r.last429At,
    last429Type: r.last429Type,
    adjustments: (r.adjustments ?? []).map((a) => ({
      atMs: Date.parse(a.timestamp),
      old: a.old_limit,
      new: a.new_limit,
      reason: a.reason,
      inFlight: a.in_flight,
    })),
  };
}

export function adjustmentView(a: Adjustment): StoredAdjustment {
  return {
    timestamp: new Date(a.atMs).toISOString(),
    old_limit: a.old,
    new_limit: a.new,
    reason: a.reason,
    in_flight: a.inFlight,
  };
}

function iso(ms: string): string | null {
  return ms === '' ? null : new Date(Number(ms)).toISOString();
}

function rowFromSnapshot(keyId: string, providerId: string, s: KeySnapshot): Record<string, unknown> {
  return {
    key_id: keyId,
    provider_id: providerId,
    learned_limit: s.cl === '' ? null : Number(s.cl),
    concurrent_429_count: num(s.c),
    rpm_429_count: num(s.r),
    tpm_429_count: num(s.t),
    unknown_429_count: num(s.u),
    last_429_at: iso(s.l4),
    last_429_type: s.lt === '' ? null : s.lt,
    last_concurrency_429_at: iso(s.lc),
    boundary: s.bd === '' ? null : Number(s.bd),
    last_probe_at: iso(s.lp),
    adjustments: parseHistory(s.h).map(adjustmentView),
    version: num(s.v),
  };
}
