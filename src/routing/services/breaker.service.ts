import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import { KeyPoolService } from '../../key-pool/services/key-pool.service.js';
import { FloodgateMetrics } from '../../metrics/floodgate-metrics.js';
import { AtomicStore } from '../../state/atomic-store.js';
import { PubSub, type Unsubscribe } from '../../state/pub-sub.js';
import {
  admitFromView,
  breakerRules,
  CLOSED,
  emptyRecord,
  HALF_OPEN,
  OPEN,
  RECORD_FIELDS,
  visibleState,
  visibleWindow,
  type BreakerOp,
  type BreakerRecord,
  type BreakerRules,
  type StateCode,
} from '../domain/breaker.js';
import {
  breakerKey,
  breakerScript,
  breakerTtlMs,
  decodeBreaker,
  encodeBreaker,
  type BreakerReply,
} from '../infrastructure/breaker.script.js';
import type {
  BreakerAdmission,
  BreakerForce,
  BreakerOutcome,
  BreakerView,
  TargetRef,
} from '../routing.types.js';
import { RoutesService } from './routes.service.js';

/** Every transition is published here: `{p, m, r: [record fields]}` (other instances update their view). */
export const BREAKER_CHANNEL = 'routing:breaker';
/** Successes counted in process are added to the shared window this often (one store step per target). */
export const BREAKER_FLUSH_MS = 1000;
/** Views of targets that are not plainly closed are re-read this often (heals a lost message). */
export const BREAKER_REFRESH_MS = 5000;
/** A probe's claim holds at least this long (or the provider's timeout, if longer): then another may go. */
export const PROBE_CLAIM_MIN_MS = 30_000;

/**
 * A transition this instance's store step made (exactly one instance sees each one: the one whose
 * step changed the state; the others learn it from pub/sub and are not told here).
 */
export interface BreakerTransitionEvent {
  target: TargetRef;
  to: 'open' | 'half_open' | 'closed';
  /** When the half-open probe may go (ms, store clock); 0 unless `to` is open. */
  openUntilMs: number;
  consecutiveFailures: number;
  windowFailures: number;
  windowRequests: number;
}
export type BreakerTransitionListener = (event: BreakerTransitionEvent) => void;

interface TargetState {
  target: TargetRef;
  /** The last record seen (reply or message); undefined until first read. */
  rec: BreakerRecord | undefined;
  /** Successes not yet in the shared window, and when the last of them was reported. */
  pendingOk: number;
  lastOkMs: number;
  /** A first read or a probe claim in flight (other admissions of this instance wait on / skip it). */
  loading: Promise<void> | null;
  claiming: boolean;
  /** The token (claim end) of the probe this instance holds, for `releaseProbe`; 0: none. */
  probeToken: number;
}

/**
 * The circuit breaker per target (provider + model), shared by every instance through the
 * AtomicStore (Redis in distributed mode, LocalDb embedded), with an in-process view kept fresh by
 * the store's replies and a pub/sub message on every transition (docs/breaker.md).
 */
@Injectable()
export class BreakerService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('Breaker');
  private readonly rules: BreakerRules;
  private readonly ttlMs: number;
  private readonly targets = new Map<string, TargetState>();
  private readonly inflight = new Set<Promise<unknown>>();
  private unsubscribe: Unsubscribe | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private lastErrorLogMs = 0;
  private closing = false;
  private readonly transitionListeners = new Set<BreakerTransitionListener>();

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    @Inject(AtomicStore) private readonly store: AtomicStore,
    @Inject(PubSub) private readonly pubsub: PubSub,
    private readonly metrics: FloodgateMetrics,
    private readonly keyPool: KeyPoolService,
    private readonly routes: RoutesService,
  ) {
    this.rules = breakerRules(config.breaker);
    this.ttlMs = breakerTtlMs(this.rules);
  }

  async onModuleInit(): Promise<void> {
    this.unsubscribe = await this.pubsub.subscribe(BREAKER_CHANNEL, (m) => this.onMessage(m));
    this.flushTimer = setInterval(() => void this.flush(), BREAKER_FLUSH_MS);
    this.flushTimer.unref();
    this.refreshTimer = setInterval(() => void this.refresh(), BREAKER_REFRESH_MS);
    this.refreshTimer.unref();
    this.metrics.onCollect(() => this.collectMetrics());
  }

  async onApplicationShutdown(): Promise<void> {
    this.closing = true;
    clearInterval(this.flushTimer);
    clearInterval(this.refreshTimer);
    // The last successes go to the window; a store that does not answer is not waited out.
    const done = Promise.all([this.flush(), ...this.inflight]).then(() => undefined);
    await Promise.race([done, new Promise<void>((r) => setTimeout(r, 1000).unref())]);
    await this.unsubscribe?.().catch(() => undefined);
  }

  /** Called on every transition this instance's store step made (Alerts); returns the remover. */
  onTransition(listener: BreakerTransitionListener): () => void {
    this.transitionListeners.add(listener);
    return () => this.transitionListeners.delete(listener);
  }

  // ---- the relay's side ------------------------------------------------------------------------

  /**
   * Synchronous, from the in-process view: 'deny' while open (or forced open), 'allow' while closed
   * (or forced closed). An open breaker whose open time has passed answers 'probe' only to the
   * caller that wins the shared probe claim — hence a promise; when closed it resolves at once
   * without touching the store. A target this instance has no view of yet is read once first.
   */
  admit(target: TargetRef, forced: BreakerForce): BreakerAdmission | Promise<BreakerAdmission> {
    if (forced === 'open') return 'deny';
    if (forced === 'closed') return 'allow';
    const t = this.state(target);
    if (!t.rec) {
      // A store that failed leaves no view: the next admission tries again.
      t.loading ??= this.run(t, { op: 'get' }).then(
        () => undefined,
        () => {
          t.loading = null;
        },
      );
      return t.loading.then(() => (t.rec ? this.admit(target, forced) : 'allow'));
    }
    const a = admitFromView(t.rec, forced, Date.now());
    if (a !== 'claim') return a;
    // One claim per instance at a time: the others are denied while it is out.
    if (t.claiming) return 'deny';
    t.claiming = true;
    return this.claimMs(target.providerId)
      .then((claimMs) => this.run(t, { op: 'claim', claimMs }))
      .then(
        (reply) => {
          if (reply.admission === 'probe') t.probeToken = reply.record.pu;
          return reply.admission === 'probe' ? 'probe' : reply.admission === 'allow' ? 'allow' : 'deny';
        },
        () => 'deny' as const,
      )
      .finally(() => {
        t.claiming = false;
      });
  }

  /**
   * An attempt's outcome for the breaker: failures (5xx, timeouts, connection errors) are reported
   * at once; successes only when they matter (after failures, or for a probe) — the rest are counted
   * in process and flushed in batches (no store write per request). Never throws; never awaited on
   * the client's path.
   */
  report(target: TargetRef, outcome: BreakerOutcome, probe: boolean): void {
    try {
      const t = this.state(target);
      if (probe) t.probeToken = 0;
      if (outcome === 'failure') {
        void this.run(t, { op: 'fail', probe }).catch(() => undefined);
      } else if (probe || (t.rec !== undefined && t.rec.s === CLOSED && t.rec.cf > 0)) {
        void this.run(t, { op: 'ok', probe }).catch(() => undefined);
      } else if (t.rec !== undefined && t.rec.s !== CLOSED) {
        // Not the probe, and not closed: a success changes nothing (only the probe closes it). A
        // target forced closed while its breaker is open sends all its traffic here: no store step.
      } else {
        t.pendingOk += 1;
        t.lastOkMs = Date.now();
      }
    } catch (err) {
      this.logError(err);
    }
  }

  /**
   * A probe this instance was given ('probe' from `admit`) will not be sent after all (no capacity
   * on the target right now, the client went away before it was sent): its claim is given back so
   * the next admission anywhere may probe at once, instead of waiting for the claim to expire. Not
   * for a probe that was sent — report its outcome. Never throws.
   */
  releaseProbe(target: TargetRef): void {
    try {
      const t = this.state(target);
      if (t.probeToken === 0) return;
      const token = t.probeToken;
      t.probeToken = 0;
      void this.run(t, { op: 'release', token }).catch(() => undefined);
    } catch (err) {
      this.logError(err);
    }
  }

  /** The breakers of these targets (read from the store), for /api/admin/status, the dashboard and the gauges. */
  async views(targets: readonly (TargetRef & { forced: BreakerForce })[]): Promise<BreakerView[]> {
    return Promise.all(
      targets.map(async (target) => {
        const t = this.state(target);
        // The shared record; the last view when the store can't answer.
        await this.run(t, { op: 'get' }).catch(() => undefined);
        const now = Date.now();
        const rec = t.rec ?? emptyRecord();
        const state = visibleState(rec, now);
        const w = visibleWindow(rec, now, this.rules);
        return {
          providerId: target.providerId,
          model: target.model,
          state,
          forced: target.forced,
          consecutiveFailures: rec.cf,
          windowFailures: w.failures,
          windowRequests: w.requests,
          openUntilMs: state === 'closed' ? null : rec.ou,
        };
      }),
    );
  }

  // ---- store, views, messages ------------------------------------------------------------------

  private state(target: TargetRef): TargetState {
    const k = `${target.providerId}\u0000${target.model}`;
    let t = this.targets.get(k);
    if (!t) {
      t = {
        target: { providerId: target.providerId, model: target.model },
        rec: undefined,
        pendingOk: 0,
        lastOkMs: 0,
        loading: null,
        claiming: false,
        probeToken: 0,
      };
      this.targets.set(k, t);
    }
    return t;
  }

  /** One atomic step on the target's record; the reply updates the view; a transition is published. */
  private run(t: TargetState, op: BreakerOp): Promise<BreakerReply> {
    const p = this.store
      .run(breakerScript, [breakerKey(t.target.providerId, t.target.model)], encodeBreaker(op, this.rules))
      .then((raw) => {
        const reply = decodeBreaker(raw);
        // The newest record wins (a message may have overtaken this reply). Version 0 is no record:
        // it replaces the view only once the view's record could have expired (its version is the
        // time of its last change, and the store renews the TTL on every change).
        const rec = reply.record;
        if (!t.rec || rec.v >= t.rec.v || (rec.v === 0 && Date.now() - t.rec.v >= this.ttlMs)) t.rec = rec;
        if (reply.transition !== '' || (op.op === 'release' && rec.pu === 0)) {
          if (reply.transition !== '') {
            this.countTransition(t.target, reply.transition);
            this.tellTransition(t.target, reply.transition, reply.record);
          }
          const message = JSON.stringify({
            p: t.target.providerId,
            m: t.target.model,
            r: RECORD_FIELDS.map((f) => reply.record[f]),
          });
          void this.pubsub.publish(BREAKER_CHANNEL, message).catch((err: unknown) => this.logError(err));
        }
        return reply;
      });
    const tracked = p.catch((err: unknown) => this.logError(err));
    this.inflight.add(tracked);
    void tracked.finally(() => this.inflight.delete(tracked));
    return p;
  }

  private onMessage(message: string): void {
    let m: { p?: unknown; m?: unknown; r?: unknown };
    try {
      m = JSON.parse(message) as typeof m;
    } catch {
      return;
    }
    if (typeof m.p !== 'string' || typeof m.m !== 'string' || !Array.isArray(m.r)) return;
    const values = m.r as unknown[];
    const rec = {} as Record<(typeof RECORD_FIELDS)[number], number>;
    RECORD_FIELDS.forEach((f, i) => (rec[f] = Number(values[i] ?? 0)));
    const s: StateCode = rec.s === OPEN ? OPEN : rec.s === HALF_OPEN ? HALF_OPEN : CLOSED;
    const t = this.state({ providerId: m.p, model: m.m });
    if (!t.rec || rec.v > t.rec.v) t.rec = { ...rec, s };
  }

  /** Counted successes → the shared window, one step per target. */
  private async flush(): Promise<void> {
    const steps: Promise<unknown>[] = [];
    for (const t of this.targets.values()) {
      if (t.pendingOk === 0) continue;
      const op: BreakerOp = { op: 'add', n: t.pendingOk, lastMs: t.lastOkMs };
      t.pendingOk = 0;
      steps.push(this.run(t, op).catch(() => undefined));
    }
    await Promise.all(steps);
  }

  /** Re-reads the targets that are not plainly closed (a lost message heals within this period). */
  private async refresh(): Promise<void> {
    if (this.closing) return;
    const steps: Promise<unknown>[] = [];
    for (const t of this.targets.values()) {
      if (t.rec && (t.rec.s !== CLOSED || t.rec.cf > 0))
        steps.push(this.run(t, { op: 'get' }).catch(() => undefined));
    }
    await Promise.all(steps);
  }

  private async claimMs(providerId: string): Promise<number> {
    const providers = await this.keyPool.routableProviders().catch(() => []);
    const p = providers.find((x) => x.id === providerId);
    return Math.max(PROBE_CLAIM_MIN_MS, p?.timeoutMs ?? 0);
  }

  /** Every provider's name by id (enabled or not, with keys or not): the metrics' provider label. */
  private async providerNames(): Promise<Map<string, string>> {
    const providers = await this.keyPool.providerSummaries().catch(() => []);
    return new Map(providers.map((p) => [p.id, p.name]));
  }

  private tellTransition(target: TargetRef, to: string, rec: BreakerRecord): void {
    if (to !== 'open' && to !== 'half_open' && to !== 'closed') return;
    const event: BreakerTransitionEvent = {
      target,
      to,
      openUntilMs: to === 'open' ? rec.ou : 0,
      consecutiveFailures: rec.cf,
      windowFailures: rec.wf,
      windowRequests: rec.wr,
    };
    for (const listener of this.transitionListeners) {
      try {
        listener(event);
      } catch (err) {
        this.logError(err);
      }
    }
  }

  private countTransition(target: TargetRef, to: string): void {
    void this.providerNames().then((names) =>
      this.metrics.breakerTransitions.inc({
        provider: names.get(target.providerId) ?? target.providerId,
        model: target.model,
        to,
      }),
    );
  }

  /** Gauges at scrape time: every target of every enabled route, and any other target this instance saw. */
  private async collectMetrics(): Promise<void> {
    const seen = new Map<string, TargetRef & { forced: BreakerForce }>();
    for (const route of await this.routes.enabledRoutes())
      for (const t of route.targets)
        seen.set(`${t.providerId}\u0000${t.model}`, {
          providerId: t.providerId,
          model: t.model,
          forced: t.breaker,
        });
    for (const [k, t] of this.targets) if (!seen.has(k)) seen.set(k, { ...t.target, forced: 'auto' });
    const [views, names] = await Promise.all([this.views([...seen.values()]), this.providerNames()]);
    this.metrics.breakerState.reset();
    for (const v of views)
      this.metrics.breakerState.set(
        { provider: names.get(v.providerId) ?? v.providerId, model: v.model },
        v.state === 'open' ? 2 : v.state === 'half_open' ? 1 : 0,
      );
  }

  private logError(err: unknown): void {
    const now = Date.now();
    if (now - this.lastErrorLogMs < 5000) return;
    this.lastErrorLogMs = now;
    this.logger.warn(
      `circuit breaker store step failed: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}
