import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { KeyLease, KeyRefusal } from '../key-pool/key-pool.types.js';
import { KeyPoolService } from '../key-pool/key-pool.service.js';
import { PriorityQueue } from '../state/priority-queue.js';
import { PubSub, type Unsubscribe } from '../state/pub-sub.js';
import { AdmissionService } from './admission.service.js';

const PRIORITY_LEVELS = [1, 2, 3, 4];
/** How long a provider counts as contended after queue activity (capacity releases are broadcast meanwhile). */
const CONTENDED_FOR_MS = 5_000;
/** A loop with an empty queue this long stops (it restarts on the next enqueue or wake). */
const IDLE_STOP_MS = 2_000;
/** After a waiter's timeout the job may already be taken: how long to wait for its grant. */
const LATE_GRANT_MS = 2_000;
/**
 * How long a waiting request waits for the queue's store to answer once its own time is up. The
 * queue's connection waits out outages (BullMQ), so a frozen Redis would otherwise hold the request
 * until Redis returns; a job whose removal was not confirmed is harmless (its grant, if any, finds
 * no waiter and is given back).
 */
const STORE_ANSWER_MS = 1_000;
const NO_ANSWER = Symbol('no answer');

/** `p`, or NO_ANSWER when it has not settled within `ms` (p keeps running; its rejection is ignored). */
function within<T>(p: Promise<T>, ms: number): Promise<T | typeof NO_ANSWER> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<typeof NO_ANSWER>((resolve) => {
      timer = setTimeout(() => resolve(NO_ANSWER), ms);
      timer.unref();
    }),
  ]);
}

interface JobData {
  instance: string;
  requestId: string;
}

interface GrantMessage {
  jobId: string;
  lease?: Record<string, unknown>;
  refusal?: KeyRefusal;
}

export type WaitResult =
  | { kind: 'granted'; lease: KeyLease; waitedMs: number }
  | { kind: 'refused'; refusal: KeyRefusal; waitedMs: number }
  | { kind: 'timeout'; waitedMs: number }
  | { kind: 'aborted'; waitedMs: number };

interface Waiter {
  providerId: string;
  resolve: (message: GrantMessage) => void;
}

/**
 * Priority dispatch for requests that could not be admitted at once. Every instance runs one loop per
 * provider with waiting requests; a loop first wins capacity (KeyPool acquire with the queue gate
 * bypassed), only then takes the next job (BullMQ manual fetch: highest priority, FIFO within a level,
 * across all instances), and sends the lease to the waiting request's instance over pub/sub. So a job
 * is never taken without capacity to run it and a low-priority job can't block an urgent one that
 * arrives later. Loops wake on enqueue and on capacity release (broadcast only while the provider is
 * contended), and otherwise at the refusal's retry time.
 */
@Injectable()
export class RelayDispatcher implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('Dispatcher');
  readonly instanceId = randomUUID();
  private readonly waiters = new Map<string, Waiter>();
  private readonly loops = new Map<string, WakeSignal>();
  private readonly contendedUntil = new Map<string, number>();
  private readonly unsubscribers: Unsubscribe[] = [];
  private stopped = false;
  /** Jobs granted by this instance's loops (for tests and status). */
  granted = 0;

  constructor(
    @Inject(PriorityQueue) private readonly queue: PriorityQueue,
    @Inject(PubSub) private readonly pubsub: PubSub,
    private readonly keyPool: KeyPoolService,
    private readonly admission: AdmissionService,
  ) {}

  async onModuleInit(): Promise<void> {
    this.unsubscribers.push(
      await this.pubsub.subscribe(`relay:grant:${this.instanceId}`, (m) => this.onGrant(m)),
      await this.pubsub.subscribe('relay:wake', (providerId) => {
        this.contendedUntil.set(providerId, Date.now() + CONTENDED_FOR_MS);
        this.ensureLoop(providerId);
      }),
    );
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    for (const loop of this.loops.values()) loop.wake();
    await Promise.all(this.unsubscribers.map((u) => u().catch(() => undefined)));
  }

  /** Waiting requests per priority (1 urgent … 4 low) for a provider, all instances. */
  depth(providerId: string): Promise<Record<number, number>> {
    return this.queue.counts(providerId, PRIORITY_LEVELS);
  }

  /** `depth`, or null when the queue's store does not answer within `ms` (a request must not hang on it). */
  async depthWithin(providerId: string, ms: number): Promise<Record<number, number> | null> {
    const r = await within(this.depth(providerId), ms);
    return r === NO_ANSWER ? null : r;
  }

  /** Called when a lease is released: wakes the loops of a contended provider on every instance. */
  capacityReleased(providerId: string): void {
    const until = this.contendedUntil.get(providerId);
    if (until === undefined) return;
    if (until < Date.now()) {
      this.contendedUntil.delete(providerId);
      return;
    }
    // This instance's loop wakes at once; the others hear it over pub/sub.
    this.loops.get(providerId)?.wake();
    this.pubsub.publish('relay:wake', providerId).catch(() => undefined);
  }

  /**
   * Queue a request and wait for a lease. `priority`: 1 urgent … 4 low. Aging (agingMs > 0) moves a
   * request up one level each time it has waited that long.
   */
  async wait(
    providerId: string,
    priority: number,
    options: { requestId: string; timeoutMs: number; agingMs: number; signal: AbortSignal },
  ): Promise<WaitResult> {
    const started = Date.now();
    const jobId = `${options.requestId.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64)}-${randomUUID().slice(0, 8)}`;
    let level = priority;
    let settle!: (m: GrantMessage | 'timeout' | 'aborted') => void;
    const outcome = new Promise<GrantMessage | 'timeout' | 'aborted'>((resolve) => (settle = resolve));
    this.waiters.set(jobId, { providerId, resolve: (m) => settle(m) });
    const onAbort = () => settle('aborted');
    options.signal.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => settle('timeout'), options.timeoutMs);
    let aging: NodeJS.Timeout | undefined;
    if (options.agingMs > 0 && priority > 1) {
      aging = setInterval(() => {
        if (level <= 1) return;
        void (async () => {
          if (await this.queue.remove(providerId, jobId)) {
            level -= 1;
            await this.queue.add<JobData>(providerId, {
              id: jobId,
              priority: level,
              data: { instance: this.instanceId, requestId: options.requestId },
            });
            this.wakeAll(providerId);
          }
        })().catch(() => undefined);
      }, options.agingMs);
    }
    try {
      // The request's own deadline bounds the enqueue too (the queue's connection waits out outages).
      const added = this.queue.add<JobData>(providerId, {
        id: jobId,
        priority: level,
        data: { instance: this.instanceId, requestId: options.requestId },
      });
      const first = await Promise.race([added.then(() => 'added' as const), outcome]);
      if (first === 'added') this.wakeAll(providerId);
      else added.catch(() => undefined);
      let result = first === 'added' ? await outcome : first;
      if (result === 'timeout' || result === 'aborted') {
        const why = result;
        const removed = await within(
          this.queue.remove(providerId, jobId).catch(() => false),
          STORE_ANSWER_MS,
        );
        // No answer from the queue's store: answer now; a grant that comes later finds no waiter
        // and is given back (onGrant).
        if (removed === NO_ANSWER) return { kind: why, waitedMs: Date.now() - started };
        if (!removed) {
          // Already taken by a dispatcher: its grant is on the way. Take it (and give it back if aborted).
          const late = await Promise.race([
            new Promise<GrantMessage | null>((resolve) => this.waiters.set(jobId, { providerId, resolve })),
            new Promise<null>((resolve) => setTimeout(() => resolve(null), LATE_GRANT_MS)),
          ]);
          if (late?.lease && why === 'timeout' && !options.signal.aborted) {
            result = late;
          } else {
            if (late?.lease) await this.releaseUnused(late);
            return { kind: why, waitedMs: Date.now() - started };
          }
        } else {
          return { kind: why, waitedMs: Date.now() - started };
        }
      }
      const waitedMs = Date.now() - started;
      if (result.refusal) return { kind: 'refused', refusal: result.refusal, waitedMs };
      const lease = result.lease ? this.keyPool.rehydrate(result.lease) : null;
      if (!lease) return { kind: 'timeout', waitedMs };
      return { kind: 'granted', lease, waitedMs };
    } finally {
      clearTimeout(timer);
      clearInterval(aging);
      options.signal.removeEventListener('abort', onAbort);
      this.waiters.delete(jobId);
    }
  }

  private wakeAll(providerId: string): void {
    this.contendedUntil.set(providerId, Date.now() + CONTENDED_FOR_MS);
    this.ensureLoop(providerId);
    this.pubsub.publish('relay:wake', providerId).catch(() => undefined);
  }

  private onGrant(raw: string): void {
    let message: GrantMessage;
    try {
      message = JSON.parse(raw) as GrantMessage;
    } catch {
      return;
    }
    const waiter = this.waiters.get(message.jobId);
    if (waiter) {
      waiter.resolve(message);
      return;
    }
    // The request is gone (timed out, client left, instance restarted): give the capacity back.
    void this.releaseUnused(message);
  }

  private async releaseUnused(message: GrantMessage): Promise<void> {
    if (!message.lease) return;
    const lease = this.keyPool.rehydrate(message.lease);
    if (lease) {
      await this.keyPool.report(lease, { notSent: true }).catch(() => undefined);
      this.capacityReleased(lease.providerId);
    }
  }

  private ensureLoop(providerId: string): void {
    const existing = this.loops.get(providerId);
    if (existing) {
      existing.wake();
      return;
    }
    const signal = new WakeSignal();
    this.loops.set(providerId, signal);
    void this.run(providerId, signal).finally(() => this.loops.delete(providerId));
  }

  private async run(providerId: string, signal: WakeSignal): Promise<void> {
    const sleep = (ms: number) => signal.sleep(ms);
    let idleSince = Date.now();
    while (!this.stopped) {
      try {
        const counts = await this.queue.counts(providerId, PRIORITY_LEVELS);
        const waiting = PRIORITY_LEVELS.reduce((n, p) => n + (counts[p] ?? 0), 0);
        if (waiting === 0) {
          if (Date.now() - idleSince > IDLE_STOP_MS) return;
          await sleep(250);
          continue;
        }
        idleSince = Date.now();
        const result = await this.admission.tryAcquire(providerId, 1, true);
        if (!result.ok) {
          if (result.refusal.kind === 'no_usable_keys') {
            // Nothing will change by waiting: answer the next waiter now (503), one at a time.
            const job = await this.queue.take<JobData>(providerId);
            if (job) await this.send(job.data.instance, { jobId: job.id, refusal: result.refusal });
            continue;
          }
          await sleep(Math.min(Math.max(result.refusal.retryAfterMs, 5), 1000));
          continue;
        }
        const job = await this.queue.take<JobData>(providerId);
        if (!job) {
          await this.keyPool.report(result.lease, { notSent: true });
          continue;
        }
        this.granted++;
        await this.send(job.data.instance, { jobId: job.id, lease: { ...result.lease } });
      } catch (err) {
        this.logger.warn(`dispatch loop for provider ${providerId} failed: ${(err as Error).message}`);
        await sleep(500);
      }
    }
  }

  private async send(instance: string, message: GrantMessage): Promise<void> {
    if (instance === this.instanceId) {
      // Same instance: no round trip through Redis.
      this.onGrant(JSON.stringify(message));
      return;
    }
    await this.pubsub.publish(`relay:grant:${instance}`, JSON.stringify(message));
  }
}

/** A sleep that a wake() cuts short; a wake() while awake makes the next sleep return at once. */
class WakeSignal {
  private pending = false;
  private resolver: (() => void) | undefined;

  wake(): void {
    if (this.resolver) {
      const resolve = this.resolver;
      this.resolver = undefined;
      resolve();
    } else {
      this.pending = true;
    }
  }

  sleep(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.resolver = undefined;
        resolve();
      }, ms);
      this.resolver = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
