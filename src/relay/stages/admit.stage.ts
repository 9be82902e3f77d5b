import { Inject, Injectable } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ApiError } from '../../common/api-error.js';
import type { Priority } from '../../common/principal.js';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import type { AcquireResult, KeyLease, KeyRefusal } from '../../key-pool/key-pool.types.js';
import { FloodgateMetrics } from '../../metrics/floodgate-metrics.js';
import type { BreakerAdmission } from '../../routing/routing.types.js';
import { BreakerService } from '../../routing/services/breaker.service.js';
import { AdmissionService } from '../admission.service.js';
import { SpendBudgets } from '../infrastructure/spend-budgets.js';
import { RelayDispatcher, type WaitResult } from '../dispatcher.js';
import {
  hopelessRefusal,
  passthroughTimeout,
  queuePlan,
  queueTimeout,
  refusalRejection,
  storeUnavailable,
} from '../domain/admission-rules.js';
import { PRIORITY_RANK } from '../domain/priority.js';
import { clientClosed, type Rejection } from '../domain/rejection.js';
import { routeTargetsBroken } from '../domain/route-rules.js';
import { targetPlan } from '../domain/target-plan.js';
import type { ClientGone } from './client-gone.js';
import { flowOf } from '../../state/priority-queue.js';
import { LeaseKeeper } from './lease-keeper.js';
import { reject } from './reject.js';
import type { RoutableProvider, RouteContext, RoutedTarget } from './route.stage.js';

/** A lease to send with, or the answer instead; either way how long the request waited. */
export type Admitted = { lease: KeyLease; queueMs: number } | { error: ApiError; queueMs: number };

/** A routed request's admission: also which target the lease is for, and whether it holds the breaker's probe. */
export type RouteAdmitted =
  | { lease: KeyLease; queueMs: number; target: RoutedTarget; probe: boolean }
  | { error: ApiError; queueMs: number };

/** A target that can be sent to now (a fallback), with its lease. */
export interface TargetLease {
  lease: KeyLease;
  target: RoutedTarget;
  probe: boolean;
}

type Http = { request: FastifyRequest; reply: FastifyReply };

/** The request's fair-share flow in a provider queue: its team (with the team's weight) or the no-team flow. */
function fairFlow(request: FastifyRequest): { flow: string; weight: number } {
  const team = request.principal?.team;
  return { flow: flowOf(team), weight: team?.weight ?? 1 };
}

/**
 * Admission: straight upstream when the atomic admission step grants a key at once (no queue on the
 * uncontended path); otherwise the priority queue — or an answer at once when waiting can't help.
 */
@Injectable()
export class AdmitStage {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly admission: AdmissionService,
    private readonly dispatcher: RelayDispatcher,
    private readonly metrics: FloodgateMetrics,
    private readonly breaker: BreakerService,
    private readonly leases: LeaseKeeper,
    private readonly budgets: SpendBudgets,
  ) {}

  /**
   * `http`: the request and its reply — the request's client rate limits are decided in the first
   * admission step (same script as the lease), and their headers set on the reply here.
   */
  async admit(
    provider: RoutableProvider,
    priority: Priority,
    requestId: string,
    client: ClientGone,
    http: { request: FastifyRequest; reply: FastifyReply },
  ): Promise<Admitted> {
    const rank = PRIORITY_RANK[priority];
    const decided = await this.admission.first(http.request, provider.id, rank);
    this.budgets.admitted(http.request, decided.verdict);
    if (decided.verdict) {
      const headers = decided.verdict.headers;
      for (const name in headers) void http.reply.header(name, headers[name]);
    }
    if (decided.result === null) throw decided.verdict.error;
    const first = decided.result;
    if (first.ok) {
      this.metrics.hot.queueWait.get2(provider.name, priority).observe(0);
      return { lease: first.lease, queueMs: 0 };
    }
    const hopeless = hopelessRefusal(first.refusal, this.config.queue.timeoutMs[priority]);
    if (hopeless) throw reject(hopeless);
    return this.waitFor(provider, priority, requestId, client, fairFlow(http.request));
  }

  /** Waits in one provider's queue (or passes it by, QUEUE_FULL_POLICY=passthrough) for a lease. */
  private async waitFor(
    provider: RoutableProvider,
    priority: Priority,
    requestId: string,
    client: ClientGone,
    flow?: { flow: string; weight: number },
  ): Promise<Admitted> {
    const rank = PRIORITY_RANK[priority];
    const timeoutMs = this.config.queue.timeoutMs[priority];
    const depth = await this.dispatcher.depthWithin(provider.id, Math.min(timeoutMs, 1000));
    if (!depth) throw reject(storeUnavailable());
    const waiting = Object.values(depth).reduce((a, b) => a + b, 0);
    const plan = queuePlan(
      waiting,
      this.config.queue.maxPerProvider,
      this.config.queue.fullPolicy,
      provider.name,
    );
    if (plan.kind === 'reject') throw reject(plan.rejection);
    if (plan.kind === 'passthrough') {
      const started = Date.now();
      const lease = await this.passthrough(provider.id, rank, timeoutMs, client);
      const queueMs = Date.now() - started;
      this.metrics.hot.queueWait.get2(provider.name, priority).observe(queueMs / 1000);
      return { lease, queueMs };
    }
    const result = await this.dispatcher.wait(provider.id, rank, {
      requestId,
      timeoutMs,
      agingMs: this.config.queue.agingMs,
      signal: client.signal,
      flow,
    });
    const queueMs = result.waitedMs;
    this.metrics.hot.queueWait.get2(provider.name, priority).observe(queueMs / 1000);
    switch (result.kind) {
      case 'granted':
        return { lease: result.lease, queueMs };
      case 'refused':
        return { error: reject(refusalRejection(result.refusal)), queueMs };
      case 'aborted':
        return { error: reject(clientClosed()), queueMs };
      case 'timeout':
        return { error: reject(queueTimeout(queueMs, provider.name, priority)), queueMs };
    }
  }

  /**
   * A routed request's admission, walking its target plan (tiers ascending, weighted random order
   * inside a tier: domain/target-plan.ts). For each target: its breaker (open → skipped), then a
   * lease on its provider — the FIRST store step carries the client's rate limits (one atomic step,
   * as for any request: an uncontended primary costs one store round trip), later targets respect
   * their provider's queue (a fallback never jumps requests already waiting there). The first target
   * with a lease wins. When every target refused for capacity, the request waits in the queues of
   * all of them at once (one wait per provider, each queue keeping its priority order) and is
   * dispatched by whichever grants first; the other waits are withdrawn.
   */
  async admitRoute(
    route: RouteContext,
    priority: Priority,
    requestId: string,
    client: ClientGone,
    http: Http,
  ): Promise<RouteAdmitted> {
    const rank = PRIORITY_RANK[priority];
    const timeoutMs = this.config.queue.timeoutMs[priority];
    const alias = route.def.model;
    let limitsDecided = false;
    let hopeless: Rejection | null = null;
    /** Targets that refused for capacity, worth waiting for: one per provider, in plan order. */
    const waitable: { target: RoutedTarget; probe: boolean }[] = [];
    const passed: string[] = [];
    for (const target of targetPlan(route.targets)) {
      let pending = this.breakerAdmits(target);
      if (typeof pending !== 'string') pending = await pending;
      const admission = pending;
      if (admission === 'deny') {
        passed.push('breaker_open');
        continue;
      }
      let result: AcquireResult;
      if (!limitsDecided) {
        limitsDecided = true;
        const decided = await this.admission
          .first(http.request, target.provider.id, rank)
          .catch((err: unknown) => {
            if (admission === 'probe') this.breaker.releaseProbe(target.ref);
            throw err;
          });
        this.budgets.admitted(http.request, decided.verdict);
        if (decided.verdict) {
          const headers = decided.verdict.headers;
          for (const name in headers) void http.reply.header(name, headers[name]);
        }
        if (decided.result === null) {
          if (admission === 'probe') this.breaker.releaseProbe(target.ref);
          throw decided.verdict.error;
        }
        result = decided.result;
      } else {
        result = await this.admission.tryAcquire(target.provider.id, rank, false).catch((err: unknown) => {
          if (admission === 'probe') this.breaker.releaseProbe(target.ref);
          throw err;
        });
      }
      if (result.ok) {
        this.countFallbacks(alias, passed);
        this.metrics.hot.queueWait.get2(target.provider.name, priority).observe(0);
        return { lease: result.lease, queueMs: 0, target, probe: admission === 'probe' };
      }
      passed.push('no_capacity');
      const refusedFor = hopelessRefusal(result.refusal, timeoutMs);
      const waits = !refusedFor && !waitable.some((w) => w.target.provider.id === target.provider.id);
      if (waits) waitable.push({ target, probe: admission === 'probe' });
      // A probe that will not be sent (or not now) is given back: another request may probe at once.
      else if (admission === 'probe') this.breaker.releaseProbe(target.ref);
      if (refusedFor) hopeless ??= refusedFor;
    }
    if (waitable.length === 0) throw reject(hopeless ?? routeTargetsBroken(alias));
    let open = waitable;
    if (waitable.length > 1) {
      // Queues already full are left out (their QUEUE_FULL_POLICY applies only if every one is).
      const depths = await Promise.all(
        waitable.map((w) => this.dispatcher.depthWithin(w.target.provider.id, Math.min(timeoutMs, 1000))),
      );
      if (depths.some((d) => d === null)) throw reject(storeUnavailable());
      open = waitable.filter(
        (_, i) => Object.values(depths[i]!).reduce((a, b) => a + b, 0) < this.config.queue.maxPerProvider,
      );
    }
    let admitted: RouteAdmitted;
    if (open.length > 1)
      admitted = await this.waitForAny(open, priority, requestId, client, fairFlow(http.request));
    else {
      const only = open[0] ?? waitable[0]!;
      try {
        const a = await this.waitFor(
          only.target.provider,
          priority,
          requestId,
          client,
          fairFlow(http.request),
        );
        admitted = 'error' in a ? a : { ...a, target: only.target, probe: only.probe };
      } catch (err) {
        this.releaseProbes(waitable, null);
        throw err;
      }
    }
    this.releaseProbes(waitable, 'target' in admitted ? admitted.target : null);
    return admitted;
  }

  /**
   * Waits in several providers' queues at once (one dispatcher wait each, sharing one abort): the
   * first grant wins and the other waits are aborted. A grant that crosses the abort is given back
   * by the dispatcher (its wait sees the abort, finds its job taken, waits for the grant and
   * releases it); a grant that arrives before the abort is released here.
   */
  private async waitForAny(
    waitable: { target: RoutedTarget; probe: boolean }[],
    priority: Priority,
    requestId: string,
    client: ClientGone,
    flow?: { flow: string; weight: number },
  ): Promise<RouteAdmitted> {
    const rank = PRIORITY_RANK[priority];
    const timeoutMs = this.config.queue.timeoutMs[priority];
    if (client.aborted) return { error: reject(clientClosed()), queueMs: 0 };
    const started = Date.now();
    const stop = new AbortController();
    const clientSignal = client.signal;
    const onClientGone = () => stop.abort();
    clientSignal.addEventListener('abort', onClientGone, { once: true });
    type Won = { lease: KeyLease; target: RoutedTarget; probe: boolean };
    const settled = await new Promise<{ won: Won } | { results: WaitResult[]; error?: Error }>((resolve) => {
      let pending = waitable.length;
      let won = false;
      const results: WaitResult[] = [];
      let error: Error | undefined;
      const done = () => {
        if (--pending === 0 && !won) resolve({ results, error });
      };
      for (const w of waitable) {
        this.dispatcher
          .wait(w.target.provider.id, rank, {
            requestId,
            timeoutMs,
            agingMs: this.config.queue.agingMs,
            signal: stop.signal,
            flow,
          })
          .then(
            (r) => {
              if (r.kind === 'granted') {
                if (won) {
                  // a second grant, before the others' abort reached them: not needed
                  void this.leases.release(r.lease, { notSent: true }).catch(() => undefined);
                } else {
                  won = true;
                  stop.abort();
                  resolve({ won: { lease: r.lease, target: w.target, probe: w.probe } });
                }
              }
              results.push(r);
              done();
            },
            (err: unknown) => {
              error ??= err instanceof Error ? err : new Error(String(err));
              done();
            },
          );
      }
    });
    clientSignal.removeEventListener('abort', onClientGone);
    const queueMs = Date.now() - started;
    if ('won' in settled) {
      this.metrics.hot.queueWait.get2(settled.won.target.provider.name, priority).observe(queueMs / 1000);
      return { ...settled.won, queueMs };
    }
    const first = waitable[0]!.target.provider;
    this.metrics.hot.queueWait.get2(first.name, priority).observe(queueMs / 1000);
    if (client.aborted) return { error: reject(clientClosed()), queueMs };
    if (settled.error !== undefined && settled.results.length === 0) throw settled.error;
    const refused = settled.results.find(
      (r): r is WaitResult & { refusal: KeyRefusal } => r.kind === 'refused',
    );
    if (refused && !settled.results.some((r) => r.kind === 'timeout'))
      return { error: reject(refusalRejection(refused.refusal)), queueMs };
    return { error: reject(queueTimeout(queueMs, first.name, priority)), queueMs };
  }

  /**
   * A fallback after a failed attempt: the next target of a fresh plan not yet tried whose breaker
   * lets it through and whose provider has a key free NOW (its queue is not waited on, and not
   * respected either, like the retry on another key: this request already waited its turn once).
   * Null when none can take it now: the client then gets the last failure's answer.
   */
  async anotherTarget(
    route: RouteContext,
    tried: ReadonlySet<RoutedTarget>,
    priority: Priority,
  ): Promise<TargetLease | null> {
    const rank = PRIORITY_RANK[priority];
    for (const target of targetPlan(route.targets, Math.random, tried)) {
      let pending = this.breakerAdmits(target);
      if (typeof pending !== 'string') pending = await pending;
      const admission = pending;
      if (admission === 'deny') {
        this.metrics.routeFallbacks.labels(route.def.model, 'breaker_open').inc();
        continue;
      }
      const r = await this.admission.tryAcquire(target.provider.id, rank, true).catch((err: unknown) => {
        if (admission === 'probe') this.breaker.releaseProbe(target.ref);
        throw err;
      });
      if (r.ok) return { lease: r.lease, target, probe: admission === 'probe' };
      if (admission === 'probe') this.breaker.releaseProbe(target.ref);
      this.metrics.routeFallbacks.labels(route.def.model, 'no_capacity').inc();
    }
    return null;
  }

  /** The probes held by waits that did not win (all of them when none did) are given back. */
  private releaseProbes(
    waits: readonly { target: RoutedTarget; probe: boolean }[],
    won: RoutedTarget | null,
  ): void {
    for (const w of waits) if (w.probe && w.target !== won) this.breaker.releaseProbe(w.target.ref);
  }

  /** The breaker's answer, without an await when it answers at once (closed: the common case). */
  private breakerAdmits(target: RoutedTarget): BreakerAdmission | Promise<BreakerAdmission> {
    return this.breaker.admit(target.ref, target.target.breaker);
  }

  private countFallbacks(alias: string, reasons: readonly string[]): void {
    for (const reason of reasons) this.metrics.routeFallbacks.labels(alias, reason).inc();
  }

  /** For the one retry: another key that is free right now (the queue is not waited on again). */
  async another(providerId: string, priority: Priority, tried: readonly string[]): Promise<KeyLease | null> {
    const r = await this.admission.tryAcquire(providerId, PRIORITY_RANK[priority], true, tried);
    return r.ok ? r.lease : null;
  }

  /** Queue full under QUEUE_FULL_POLICY=passthrough: skip the queue, keep asking for admission until the timeout. */
  private async passthrough(
    providerId: string,
    rank: number,
    timeoutMs: number,
    client: ClientGone,
  ): Promise<KeyLease> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.admission.tryAcquire(providerId, rank, true);
      if (r.ok) return r.lease;
      if (r.refusal.kind === 'no_usable_keys') throw reject(refusalRejection(r.refusal));
      if (client.aborted) throw reject(clientClosed());
      if (Date.now() + Math.min(r.refusal.retryAfterMs, 50) > deadline)
        throw reject(passthroughTimeout(r.refusal.retryAfterMs));
      await new Promise((resolve) => setTimeout(resolve, Math.max(5, Math.min(r.refusal.retryAfterMs, 50))));
    }
  }
}
