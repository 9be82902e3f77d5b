import { Inject, Injectable } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import type { AcquireOptions, AcquireResult, AcquireStep } from '../key-pool/key-pool.types.js';
import { KeyPoolService } from '../key-pool/services/key-pool.service.js';
import {
  CLIENT_LIMITS_STEP,
  RateLimitService,
  type CombinedDecision,
  type Verdict,
} from '../rate-limit/rate-limit.service.js';
import { AtomicStore, type AtomicScript, type ScriptValue } from '../state/atomic-store.js';
import { queueKeys } from '../state/priority-queue.js';
import {
  combineGates,
  decodeGrantBox,
  grantBoxKey,
  type GrantBox,
  QUEUE_GATE,
  QueueMode,
  readGrantBoxScript,
  type StaticGate,
} from './admission-gates.js';
import { AdmissionGrants, unitVerdict } from './admission-grants.js';
import type { GrantPolicy } from './domain/grant-rules.js';
import {
  admissionGrantScript,
  admissionScript,
  boundAdmission,
  decodeAdmission,
  decodeGrantAdmission,
  encodeAdmission,
  encodeGrantAdmission,
} from './infrastructure/admission.script.js';

/**
 * The first admission of a relayed request: the client-limit verdict (null when the request had no
 * deferred client limits) and, unless that verdict refuses, the acquisition's result.
 */
export type FirstAdmission =
  | { verdict: Verdict | null; result: AcquireResult }
  | { verdict: Verdict & { error: NonNullable<Verdict['error']> }; result: null };

/**
 * One dispatch step, prepared once, with what its grant box kept (QUEUE_GATE) when its reply was
 * lost. The same step sent again (ioredis re-sends a command that was out when its connection
 * dropped) changes nothing and answers with the first run's outcome (refusal ALREADY_DISPATCHED).
 */
export interface DispatchAttempt {
  /** True when the step keeps a grant box (the store can lose replies: Redis). */
  readonly recoverable: boolean;
  run(): Promise<AcquireResult>;
  /**
   * What the step did, from its grant box: null when it took nothing (refused, or never ran — a read
   * sent after the step on the same connection runs after it). Rejects while the store does not answer.
   */
  recover(): Promise<GrantBox | null>;
  /** Gives the step's lease up as unconfirmed: KeyPool releases it once the store answers. */
  abandon(): void;
}

/** Gate contributed by another module (Adaptive's retreat bucket): static shape, per-provider inputs. */
export interface GateContribution {
  gate: StaticGate;
  inputs(providerId: string): { keys: string[]; args: (string | number)[] };
}

/**
 * One admission decision = one atomic step (one Lua script in distributed mode): the provider's gates
 * (queue order, and the retreat bucket once Adaptive contributes it) and KeyPool's key selection
 * (RPM/TPM headroom, cooldown, concurrency slot) together.
 */
@Injectable()
export class AdmissionService {
  private contributions: GateContribution[] = [];
  private gate: StaticGate = QUEUE_GATE;

  private readonly combined = new Map<string, AtomicScript>();
  /** The selection script with the gate (KeyPool's), runnable from a prepared step, by name. */
  private readonly runnable = new Map<string, AtomicScript>();

  constructor(
    private readonly keyPool: KeyPoolService,
    private readonly rateLimit: RateLimitService,
    @Inject(AtomicStore) private readonly store: AtomicStore,
    private readonly grants: AdmissionGrants,
  ) {}

  contribute(contribution: GateContribution): void {
    this.contributions.push(contribution);
    this.gate = combineGates([QUEUE_GATE, ...this.contributions.map((c) => c.gate)]);
  }

  /**
   * `priority` 1 urgent … 4 low (PRIORITY_RANK); `bypassQueue` for a retry on another key and the
   * queue-full passthrough.
   */
  tryAcquire(
    providerId: string,
    priority: number,
    bypassQueue: boolean,
    excludeKeyIds?: readonly string[],
  ): Promise<AcquireResult> {
    return this.acquire(
      providerId,
      priority,
      bypassQueue ? QueueMode.bypass : QueueMode.respectQueue,
      excludeKeyIds,
    );
  }

  /**
   * A relayed request's first admission: its client rate limits (deferred by the guard,
   * @RateLimitInAdmission), the provider's gates and the key selection decided in ONE atomic step on
   * the limiter's connection (RateLimitService.decideWith: its liveness, deadline and failure mode).
   * - client limits refuse → 429 verdict, no lease, nothing recorded;
   * - admitted → the acquisition's result (a lease, or a capacity refusal: the request then queues
   *   and counts against the client limits, never again for the dispatcher or the retry);
   * - store unavailable → RATE_LIMIT_FAILURE_MODE: closed → 503 rate_limiter_unavailable; open → the
   *   plain acquisition, which still needs the store (503 dependency_unavailable while it is down);
   * - Redis reached the decision after its deadline → 503 rate_limiter_overloaded (nothing changed).
   */
  async first(request: FastifyRequest, providerId: string, priority: number): Promise<FirstAdmission> {
    if (!this.rateLimit.hasDeferred(request))
      return { verdict: null, result: await this.tryAcquire(providerId, priority, false) };
    if (this.rateLimit.stepped) {
      // Redis Cluster: the client limits (one step per subject, each on its slot, rolled back on a
      // refusal) and then the provider step on the provider's slot — the dispatcher's own
      // selection script. As in the single script, a provider refusal keeps the client steps.
      const verdict = await this.rateLimit.decideDeferred(request);
      if (verdict.error) return { verdict: { ...verdict, error: verdict.error }, result: null };
      return { verdict, result: await this.tryAcquire(providerId, priority, false) };
    }
    if (this.grants.enabled) return this.firstWithGrants(request, providerId, priority);
    const options = this.options(providerId, priority, QueueMode.respectQueue);
    const prepared = await this.keyPool.prepareAcquire(providerId, options);
    if ('result' in prepared) {
      // Refused without asking the store (no usable keys): the client limits are decided alone.
      const verdict = await this.rateLimit.decideDeferred(request);
      return verdict.error
        ? { verdict: { ...verdict, error: verdict.error }, result: null }
        : { verdict, result: prepared.result };
    }
    const step = prepared.step;
    let decided: CombinedDecision<ScriptValue>;
    try {
      decided = await this.rateLimit.decideWith(request, {
        build: (client) =>
          this.store.kind === 'memory'
            ? boundAdmission(this.combinedScript(step), CLIENT_LIMITS_STEP, step, client)
            : { script: this.combinedScript(step), ...encodeAdmission(client, step) },
        decode: (reply) => {
          const { client, provider } = decodeAdmission(reply);
          return { client, rest: provider };
        },
      });
    } catch (err) {
      step.abandon(); // a reply we could not read (a bug): whatever it reserved is given back
      throw err;
    }
    if (decided.lost) step.abandon();
    const verdict = decided.verdict;
    if (verdict.error) return { verdict: { ...verdict, error: verdict.error }, result: null };
    if (decided.rest !== null) return { verdict, result: step.finish(decided.rest) };
    // Failing open: the client limits are skipped, the lease is not (it needs the store anyway).
    return { verdict, result: await this.keyPool.acquire(providerId, options) };
  }

  /**
   * `first` with ADMISSION_GRANTS=on (a single Redis): a live local grant of the same client
   * policies and provider admits the request without the store; otherwise the exact admission runs,
   * asking for a block (admission-grant.lua), and a block it took becomes a local grant.
   */
  private async firstWithGrants(
    request: FastifyRequest,
    providerId: string,
    priority: number,
  ): Promise<FirstAdmission> {
    const policies = this.rateLimit.deferredPolicies(request) ?? [];
    const key = this.grants.keyOf(providerId, policies);
    // one block admission per key at a time here: the others wait for its units; when it took no
    // block (near a limit), they run the exact admission (and ask for no block: with many waiters
    // an instance would hold many grants at once)
    let want = this.grants.blockFor(providerId, key);
    for (;;) {
      const local = this.grants.take(key, providerId);
      if (local) {
        this.rateLimit.admitLocally(request);
        return { verdict: local.verdict, result: { ok: true, lease: local.lease } };
      }
      const leader = this.grants.leader(key);
      if (!leader) break;
      if ((await leader) <= 1) {
        want = 1;
        break;
      }
    }
    const done = want > 1 ? this.grants.lead(key) : null;
    let block = 1;
    try {
      return await this.grantAdmission(
        request,
        providerId,
        priority,
        policies,
        key,
        want,
        (b) => (block = b),
      );
    } finally {
      done?.(block);
    }
  }

  private async grantAdmission(
    request: FastifyRequest,
    providerId: string,
    priority: number,
    policies: readonly GrantPolicy[],
    key: string,
    want: number,
    took: (block: number) => void,
  ): Promise<FirstAdmission> {
    const options = this.options(providerId, priority, QueueMode.respectQueue);
    const prepared = await this.keyPool.prepareAcquire(providerId, options);
    if ('result' in prepared) {
      const verdict = await this.rateLimit.decideDeferred(request);
      return verdict.error
        ? { verdict: { ...verdict, error: verdict.error }, result: null }
        : { verdict, result: prepared.result };
    }
    const step = prepared.step;
    let member = '';
    let block = 1;
    let decided: CombinedDecision<ScriptValue>;
    try {
      decided = await this.rateLimit.decideWith(request, {
        build: (client) => {
          member = String(client.args[0]);
          return { script: this.grantScript(step), ...encodeGrantAdmission(client, step, want) };
        },
        decode: (reply) => {
          const r = decodeGrantAdmission(reply);
          block = r.block;
          return { client: r.client, rest: r.provider };
        },
      });
    } catch (err) {
      step.abandon();
      throw err;
    }
    if (decided.lost) step.abandon();
    const verdict = decided.verdict;
    if (verdict.error) return { verdict: { ...verdict, error: verdict.error }, result: null };
    if (decided.rest === null) return { verdict, result: await this.keyPool.acquire(providerId, options) };
    const result = step.finish(decided.rest);
    if (result.ok && block > 1) {
      this.grants.add(key, providerId, policies, result.lease, member, block, verdict);
      took(block);
      // unit 1 of the block: its headers count the block's unspent units as room (unitVerdict)
      return { verdict: unitVerdict(verdict, block, 1), result };
    }
    return { verdict, result };
  }

  private grantScript(step: AcquireStep): AtomicScript {
    const name = `grant:${step.name}`;
    let script = this.combined.get(name);
    if (!script) {
      script = admissionGrantScript(CLIENT_LIMITS_STEP, step);
      this.combined.set(name, script);
    }
    return script;
  }

  private combinedScript(step: AcquireStep): AtomicScript {
    let script = this.combined.get(step.name);
    if (!script) {
      script = admissionScript(CLIENT_LIMITS_STEP, step);
      this.combined.set(step.name, script);
    }
    return script;
  }

  /**
   * The dispatcher's step: a lease and the head of the provider's queue together, or a refusal
   * (`gate`/`queue_empty` when nobody waits). On success `gateOutput` is the popped job (decodePopped;
   * empty when only expired jobs were left: the lease is then the caller's to give back). With
   * `grant` (Redis), a job of another instance is granted by the script itself (published on
   * `grant.channel` + its instance; `gateOutput` then starts with GRANT_PUBLISHED).
   *
   * Prepared, not run: the caller runs it, and reads its grant box when its reply was lost (a store
   * that can lose replies — Redis — gets one per step: QUEUE_GATE). Costs the same one round trip as
   * an acquisition; preparing asks no store.
   */
  async prepareDispatch(
    providerId: string,
    grant?: { channel: string; instance: string },
  ): Promise<DispatchAttempt> {
    const box = this.store.kind === 'redis' ? grantBoxKey(providerId, randomUUID()) : null;
    const options = this.options(providerId, 1, QueueMode.dispatch, undefined, grant, box);
    const prepared = await this.keyPool.prepareAcquire(providerId, options);
    if ('result' in prepared) {
      const result = Promise.resolve(prepared.result);
      return {
        recoverable: false,
        run: () => result,
        recover: () => Promise.resolve(null),
        abandon: () => undefined,
      };
    }
    const step = prepared.step;
    let script = this.runnable.get(step.name);
    if (!script) {
      // KeyPool's own selection-with-gate script (the same text, so the same SHA as its acquire)
      script = {
        name: step.name,
        lua: `${step.lua}return fg_provider(KEYS, ARGV, fg_now())\n`,
        local: (db, keys, args, nowMs) => step.local(db, keys, args, nowMs),
      };
      this.runnable.set(step.name, script);
    }
    const run = script;
    return {
      recoverable: box !== null,
      run: async () => step.finish(await this.store.run(run, step.keys, step.args)),
      recover: async () => {
        if (box === null) return null;
        const raw = await this.store.run(readGrantBoxScript, [box], []);
        return typeof raw === 'string' ? decodeGrantBox(raw) : null;
      },
      abandon: () => step.abandon(),
    };
  }

  private acquire(
    providerId: string,
    priority: number,
    mode: QueueMode,
    excludeKeyIds?: readonly string[],
  ): Promise<AcquireResult> {
    // A store outage propagates as is: the global filter answers it 503 with Retry-After
    // (isConnectivityError), while a genuine bug stays a visible 500.
    return this.keyPool.acquire(providerId, this.options(providerId, priority, mode, excludeKeyIds));
  }

  private options(
    providerId: string,
    priority: number,
    mode: QueueMode,
    excludeKeyIds?: readonly string[],
    grant?: { channel: string; instance: string },
    box: string | null = null,
  ): AcquireOptions {
    const [wait, jobs, , tags] = queueKeys(providerId);
    const keys: string[] = [wait, jobs, box ?? grantBoxKey(providerId), tags];
    const args: (string | number)[] = [priority, mode, grant?.channel ?? '', grant?.instance ?? ''];
    for (const c of this.contributions) {
      const extra = c.inputs(providerId);
      keys.push(...extra.keys);
      args.push(...extra.args);
    }
    return { gate: { gate: this.gate, keys, args }, excludeKeyIds };
  }
}
