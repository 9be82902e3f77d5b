import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { KeyLease, KeyRefusal } from '../key-pool/key-pool.types.js';
import { KeyPoolService } from '../key-pool/services/key-pool.service.js';
import { PRIORITY_RANKS } from '../common/principal.js';
import { decodePopped, PriorityQueue } from '../state/priority-queue.js';
import { PubSub, type Unsubscribe } from '../state/pub-sub.js';
import type { AcquireResult } from '../key-pool/key-pool.types.js';
import {
  ALREADY_DISPATCHED,
  decodeGrantBox,
  GRANT_BOX_TTL_MS,
  GRANT_PUBLISHED,
  type GrantBox,
} from './admission-gates.js';
import { AdmissionService, type DispatchAttempt } from './admission.service.js';

/**
 * How long a provider counts as contended after a request queued for it anywhere in the cluster:
 * meanwhile every lease this instance releases for it is handed to the head of its queue.
 */
const CONTENDED_FOR_MS = 5_000;
/** An instance announces a provider's contention to the others at most this often. */
const ANNOUNCE_EVERY_MS = 1_000;
/** A loop whose waiters' jobs were all taken (their grants are on the way) looks again after this. */
const EMPTY_POLL_MS = 250;
/** After a waiter's timeout the job may already be taken: how long to wait for its grant. */
const LATE_GRANT_MS = 2_000;
/**
 * How long a waiting request waits for the queue's store to answer once its own time is up; a job
 * whose removal was not confirmed is harmless (it expires with the request's deadline, and its
 * grant, if any, finds no waiter and is given back).
 */
const STORE_ANSWER_MS = 1_000;
const NO_ANSWER = Symbol('no answer');
/** How often the grant boxes of dispatch steps whose reply was lost are read (while any is lost). */
const RECOVER_EVERY_MS = 250;
/**
 * A lost step's grant box is read only while it surely still exists (the box lives
 * GRANT_BOX_TTL_MS from the script's run, which is after the step was sent); after that the step is
 * given up to KeyPool's ledger (its lease released once the store answers).
 */
const RECOVER_FOR_MS = GRANT_BOX_TTL_MS - 2_000;
/** Bound of the lost steps kept for recovery (the oldest is given up first). */
const RECOVER_MAX = 10_000;

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
  /** A lease this instance took for the job (same instance) or that travelled as JSON. */
  lease?: Record<string, unknown>;
  /** A lease another instance's dispatch script took and published (QUEUE_GATE): made whole here. */
  grant?: { keyId: string; leaseId: string; at: number; inFlight: number; providerId: string };
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

/** What one dispatch step did: granted (or answered) a job, found none, or must wait `ms`. */
type DispatchStep = { kind: 'served' } | { kind: 'empty' } | { kind: 'wait'; ms: number };

/**
 * Priority dispatch for requests that could not be admitted at once. A waiting request is a job in
 * the provider's queue (PriorityQueue: Floodgate's own keys, shared by every instance). One dispatch
 * step = one atomic admission script that wins a slot AND pops the head of the queue together
 * (AdmissionService.dispatch): highest priority, FIFO within a level, across all instances; the lease
 * goes to the job's instance — published by that same script (Redis) when it is another instance,
 * handed over in process when it is this one — whose request is sent without another acquire. So a
 * job is never taken without capacity to run it, and a low-priority job can't block an urgent one
 * that arrives later.
 *
 * Who dispatches: the instance that frees a slot, in the same step as its release (LeaseKeeper sends
 * the dispatch script right behind the report script; while the provider is contended, which every
 * instance hears within a second of a request queueing anywhere), so the next request leaves for the
 * upstream one store round (+ the script's pub/sub message, for a job queued elsewhere) after a slot
 * frees; and, as a fallback for hand-offs that were missed or refused (cooldowns, RPM windows,
 * expired leases), a loop per provider on each instance that has waiting requests, woken by its own
 * enqueues and otherwise at the refusal's retry time.
 */
@Injectable()
export class RelayDispatcher implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('Dispatcher');
  readonly instanceId = randomUUID();
  private readonly waiters = new Map<string, Waiter>();
  /** providerId → number of this instance's waiters (its dispatch loop runs while > 0). */
  private readonly waiting = new Map<string, number>();
  private readonly loops = new Map<string, Loop>();
  private readonly contendedUntil = new Map<string, number>();
  private readonly announcedAt = new Map<string, number>();
  private readonly handOffWarnedAt = new Map<string, number>();
  private readonly unsubscribers: Unsubscribe[] = [];
  /** Where the dispatch script publishes other instances' grants (null in process: never needed). */
  private readonly grantChannel: string | null;
  private stopped = false;
  /** Dispatch steps whose reply was lost (the store may have run them) → provider and since when. */
  private readonly lost = new Map<DispatchAttempt, { providerId: string; sinceMs: number }>();
  private recoverTimer: NodeJS.Timeout | undefined;
  private recovering = false;
  /** Jobs granted by this instance's loops (for tests and status). */
  granted = 0;
  /** Dispatch steps whose lost reply was recovered from their grant box (for tests and status). */
  recovered = 0;

  constructor(
    @Inject(PriorityQueue) private readonly queue: PriorityQueue,
    @Inject(PubSub) private readonly pubsub: PubSub,
    private readonly keyPool: KeyPoolService,
    private readonly admission: AdmissionService,
  ) {
    this.grantChannel = this.pubsub.wireChannel('relay:grant:');
  }

  async onModuleInit(): Promise<void> {
    this.unsubscribers.push(
      await this.pubsub.subscribe(`relay:grant:${this.instanceId}`, (m) => this.onGrant(m)),
      await this.pubsub.subscribe('relay:contended', (providerId) => {
        this.contendedUntil.set(providerId, Date.now() + CONTENDED_FOR_MS);
        this.announcedAt.set(providerId, Date.now());
      }),
    );
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    for (const loop of this.loops.values()) loop.signal.wake();
    clearInterval(this.recoverTimer);
    this.recoverTimer = undefined;
    for (const attempt of this.lost.keys()) attempt.abandon();
    this.lost.clear();
    await Promise.all(this.unsubscribers.map((u) => u().catch(() => undefined)));
  }

  /** Whether this instance hands the slots it frees for the provider to its queue (see capacityReleased). */
  isContended(providerId: string): boolean {
    return (this.contendedUntil.get(providerId) ?? 0) >= Date.now();
  }

  /** Waiting requests per priority (1 urgent … 4 low) for a provider, all instances. */
  depth(providerId: string): Promise<Record<number, number>> {
    return this.queue.counts(providerId, PRIORITY_RANKS);
  }

  /** `depth`, or null when the queue's store does not answer within `ms` (a request must not hang on it). */
  async depthWithin(providerId: string, ms: number): Promise<Record<number, number> | null> {
    const r = await within(this.depth(providerId), ms);
    return r === NO_ANSWER ? null : r;
  }

  /**
   * Called when a lease is released: while the provider is contended, hands the freed slot to the
   * head of its queue at once (one dispatch step), whichever instance queued it.
   */
  capacityReleased(providerId: string): void {
    const until = this.contendedUntil.get(providerId);
    if (until === undefined || this.stopped) return;
    if (until < Date.now()) {
      this.contendedUntil.delete(providerId);
      return;
    }
    this.dispatchOnce(providerId).catch((err: unknown) => {
      // The waiters' own loops retry; one line per provider per 10 s is enough (a store outage
      // would otherwise log once per released request).
      const now = Date.now();
      if ((this.handOffWarnedAt.get(providerId) ?? 0) + 10_000 > now) return;
      this.handOffWarnedAt.set(providerId, now);
      this.logger.warn(`hand-off for provider ${providerId} failed: ${(err as Error).message}`);
    });
  }

  /**
   * Queue a request and wait for a lease. `priority`: 1 urgent … 4 low. Aging (agingMs > 0) moves a
   * request up one level each time it has waited that long (keeping its fair-share tag). `flow`:
   * the request's fair-share flow and weight (flowOf(team), docs/relay.md "Fair share across
   * teams"); absent = the no-team flow, weight 1.
   */
  async wait(
    providerId: string,
    priority: number,
    options: {
      requestId: string;
      timeoutMs: number;
      agingMs: number;
      signal: AbortSignal;
      flow?: { flow: string; weight: number };
    },
  ): Promise<WaitResult> {
    const started = Date.now();
    // A job outlives its request only if this instance dies: dispatchers drop it after this.
    const expiresAt = started + options.timeoutMs;
    const jobId = `${options.requestId.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64)}-${randomUUID().slice(0, 8)}`;
    let level = priority;
    let settle!: (m: GrantMessage | 'timeout' | 'aborted') => void;
    const outcome = new Promise<GrantMessage | 'timeout' | 'aborted'>((resolve) => (settle = resolve));
    // Every message for the job is kept, whenever it comes while the request is here — also after
    // its timeout, while its job's removal is out (a grant then is used or given back, never dropped).
    let delivered: GrantMessage | undefined;
    let onLate: ((m: GrantMessage) => void) | undefined;
    this.setWaiter(jobId, {
      providerId,
      resolve: (m) => {
        if (delivered) {
          void this.releaseUnused(m, providerId); // a second grant for one job: not needed
          return;
        }
        delivered = m;
        settle(m);
        onLate?.(m);
      },
    });
    const onAbort = () => settle('aborted');
    options.signal.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => settle('timeout'), options.timeoutMs);
    let aging: NodeJS.Timeout | undefined;
    if (options.agingMs > 0 && priority > 1) {
      aging = setInterval(() => {
        if (level <= 1) return;
        void (async () => {
          if (await this.queue.promote(providerId, jobId)) level -= 1;
        })().catch(() => undefined);
      }, options.agingMs);
    }
    try {
      // The request's own deadline bounds the enqueue too.
      const added = this.queue.add<JobData>(providerId, {
        id: jobId,
        priority: level,
        data: { instance: this.instanceId, requestId: options.requestId },
        expiresAt,
        flow: options.flow?.flow,
        weight: options.flow?.weight,
      });
      const first = await Promise.race([added.then(() => 'added' as const), outcome]);
      if (first === 'added') this.enqueued(providerId);
      else added.catch(() => undefined);
      let result = first === 'added' ? await outcome : first;
      if (result === 'timeout' || result === 'aborted') {
        const why = result;
        const removed = await within(
          this.queue.remove(providerId, jobId).catch(() => false),
          STORE_ANSWER_MS,
        );
        // No answer from the queue's store: answer now (unless its grant came meanwhile); a grant
        // that comes later finds no waiter and is given back (onGrant). Removed: nobody took it.
        // Not removed: already taken by a dispatcher, its grant is on the way (or came meanwhile).
        let late: GrantMessage | null = delivered ?? null;
        if (!late && removed === false) {
          let timer: NodeJS.Timeout | undefined;
          late = await Promise.race([
            new Promise<GrantMessage>((resolve) => (onLate = resolve)),
            new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), LATE_GRANT_MS))),
          ]);
          clearTimeout(timer);
        }
        const carries = late?.lease !== undefined || late?.grant !== undefined;
        if (late && carries && why === 'timeout' && !options.signal.aborted) {
          result = late;
        } else {
          // (and a grant for a request that is not served is given back)
          if (late && carries) await this.releaseUnused(late, providerId);
          return { kind: why, waitedMs: Date.now() - started };
        }
      }
      if (result.refusal) return { kind: 'refused', refusal: result.refusal, waitedMs: Date.now() - started };
      const lease = await this.leaseOf(providerId, result);
      const waitedMs = Date.now() - started;
      if (!lease) return { kind: 'timeout', waitedMs };
      return { kind: 'granted', lease, waitedMs };
    } finally {
      clearTimeout(timer);
      clearInterval(aging);
      options.signal.removeEventListener('abort', onAbort);
      this.deleteWaiter(jobId);
    }
  }

  /**
   * A job of this instance is in the queue: the provider is contended (announced to the other
   * instances at most once per ANNOUNCE_EVERY_MS, cluster-wide), and this instance's loop runs. A new
   * loop dispatches at once (a slot freed between the refused admission and the enqueue found nobody
   * to hand off to); a running one is woken only if it last found the queue empty.
   */
  private enqueued(providerId: string): void {
    const now = Date.now();
    this.contendedUntil.set(providerId, now + CONTENDED_FOR_MS);
    if ((this.announcedAt.get(providerId) ?? 0) + ANNOUNCE_EVERY_MS <= now) {
      this.announcedAt.set(providerId, now);
      this.pubsub.publish('relay:contended', providerId).catch(() => undefined);
    }
    const loop = this.loops.get(providerId);
    if (!loop) {
      const created: Loop = { signal: new WakeSignal(), lastEmpty: false };
      this.loops.set(providerId, created);
      void this.run(providerId, created);
    } else if (loop.lastEmpty) {
      loop.signal.wake();
    }
  }

  private hasWaiters(providerId: string): boolean {
    return (this.waiting.get(providerId) ?? 0) > 0;
  }

  private setWaiter(jobId: string, waiter: Waiter): void {
    if (!this.waiters.has(jobId))
      this.waiting.set(waiter.providerId, (this.waiting.get(waiter.providerId) ?? 0) + 1);
    this.waiters.set(jobId, waiter);
  }

  private deleteWaiter(jobId: string): void {
    const waiter = this.waiters.get(jobId);
    if (!waiter) return;
    this.waiters.delete(jobId);
    const n = (this.waiting.get(waiter.providerId) ?? 1) - 1;
    if (n > 0) this.waiting.set(waiter.providerId, n);
    else this.waiting.delete(waiter.providerId);
  }

  private onGrant(raw: string): void {
    let message: GrantMessage;
    try {
      message = JSON.parse(raw) as GrantMessage;
    } catch {
      return;
    }
    this.deliver(message);
  }

  private deliver(message: GrantMessage): void {
    const waiter = this.waiters.get(message.jobId);
    if (waiter) {
      waiter.resolve(message);
      return;
    }
    // The request is gone (timed out, client left, instance restarted): give the capacity back.
    void this.releaseUnused(message);
  }

  /** The lease a grant carries, whole (null: this instance does not know its key). */
  private async leaseOf(providerId: string, message: GrantMessage): Promise<KeyLease | null> {
    // The provider's view unreadable here (its cache gone while Postgres is down): as an unknown
    // key — the request is answered, the lease expires with its TTL.
    if (message.grant) return this.keyPool.leaseFromGrant(providerId, message.grant).catch(() => null);
    return message.lease ? this.keyPool.rehydrate(message.lease) : null;
  }

  private async releaseUnused(message: GrantMessage, providerId?: string): Promise<void> {
    const pid = providerId ?? message.grant?.providerId ?? (message.lease?.providerId as string | undefined);
    if (!pid || (!message.lease && !message.grant)) return;
    const lease = await this.leaseOf(pid, message).catch(() => null);
    if (lease) {
      await this.keyPool.report(lease, { notSent: true }).catch(() => undefined);
      this.capacityReleased(lease.providerId);
    }
  }

  /** While this instance has requests waiting for the provider: dispatch, else sleep until told or due. */
  private async run(providerId: string, loop: Loop): Promise<void> {
    for (;;) {
      // Checked and left synchronously, so an enqueue never sees a loop that is about to end.
      if (this.stopped || !this.hasWaiters(providerId)) {
        if (this.loops.get(providerId) === loop) this.loops.delete(providerId);
        return;
      }
      try {
        const step = await this.dispatchOnce(providerId);
        loop.lastEmpty = step.kind === 'empty';
        if (step.kind === 'served') continue;
        await loop.signal.sleep(step.kind === 'empty' ? EMPTY_POLL_MS : step.ms);
      } catch (err) {
        this.logger.warn(`dispatch loop for provider ${providerId} failed: ${(err as Error).message}`);
        await loop.signal.sleep(500);
      }
    }
  }

  /**
   * One dispatch step: a slot and the head of the queue in one atomic script, and the grant — sent
   * by that same script when the job is another instance's (Redis), else delivered here.
   */
  private async dispatchOnce(providerId: string): Promise<DispatchStep> {
    const attempt = await this.admission.prepareDispatch(
      providerId,
      this.grantChannel === null ? undefined : { channel: this.grantChannel, instance: this.instanceId },
    );
    let result: AcquireResult;
    try {
      result = await attempt.run();
    } catch (err) {
      // The store may have run it (a reply that came after the command timeout, a connection cut
      // after the command went out): the popped job and its lease are in its grant box, read as
      // soon as the store answers again; without a box, its lease is given up to KeyPool.
      if (attempt.recoverable && !this.stopped) this.lose(providerId, attempt);
      else attempt.abandon();
      throw err;
    }
    return this.settle(providerId, result);
  }

  /** What a dispatch step's answer means for its job and lease. */
  private async settle(providerId: string, result: AcquireResult): Promise<DispatchStep> {
    if (result.ok) {
      if (result.gateOutput?.startsWith(GRANT_PUBLISHED)) {
        this.granted++;
        return { kind: 'served' };
      }
      const job = result.gateOutput ? decodePopped<JobData>(result.gateOutput) : null;
      if (!job) {
        // Only expired jobs were left (dropped by the same script): the slot goes back.
        await this.keyPool.report(result.lease, { notSent: true });
        return { kind: 'served' };
      }
      this.granted++;
      await this.send(job.data.instance, { jobId: job.id, lease: { ...result.lease } });
      return { kind: 'served' };
    }
    const refusal = result.refusal;
    if (refusal.kind === 'gate' && refusal.code.startsWith(ALREADY_DISPATCHED)) {
      // A repeat of a step that had run (its first reply lost): what it did, from its grant box.
      const box = decodeGrantBox(refusal.code.slice(ALREADY_DISPATCHED.length));
      if (box) await this.settleBox(providerId, box);
      return { kind: 'served' };
    }
    if (refusal.kind === 'gate' && refusal.code === 'queue_empty') return { kind: 'empty' };
    if (refusal.kind === 'no_usable_keys') {
      // Nothing will change by waiting: answer the next waiter now (503), one at a time.
      const job = await this.queue.take<JobData>(providerId);
      if (!job) return { kind: 'empty' };
      await this.send(job.data.instance, { jobId: job.id, refusal });
      return { kind: 'served' };
    }
    // A slot freed by any instance is handed over by its releaser at once; this only bounds the wait
    // when that was missed (a lease that expired instead of being released) or refused (cooldowns,
    // RPM windows, the retreat bucket: their retry time).
    return { kind: 'wait', ms: Math.min(Math.max(refusal.retryAfterMs, 5), 1000) };
  }

  /** A step's outcome read back from its grant box: its job gets the grant (or its lease goes back). */
  private async settleBox(providerId: string, box: GrantBox): Promise<void> {
    const grant = { keyId: box.keyId, leaseId: box.leaseId, at: box.at, inFlight: box.inFlight, providerId };
    if (box.output.startsWith(GRANT_PUBLISHED)) {
      this.granted++; // the script published it to the job's instance
      return;
    }
    const job = box.output ? decodePopped<JobData>(box.output) : null;
    if (!job) {
      await this.releaseUnused({ jobId: '', grant }, providerId);
      return;
    }
    this.granted++;
    await this.send(job.data.instance, { jobId: job.id, grant });
  }

  /** Keeps a step whose reply was lost, to read its grant box (recoverLost). */
  private lose(providerId: string, attempt: DispatchAttempt): void {
    this.lost.set(attempt, { providerId, sinceMs: Date.now() });
    for (const oldest of this.lost.keys()) {
      if (this.lost.size <= RECOVER_MAX) break;
      this.lost.delete(oldest);
      oldest.abandon();
    }
    if (!this.recoverTimer) {
      this.recoverTimer = setInterval(() => void this.recoverLost(), RECOVER_EVERY_MS);
      this.recoverTimer.unref();
    }
  }

  /**
   * Reads the lost steps' grant boxes: the oldest alone first (while the store does not answer, one
   * command per tick), then, once it answered, all the others at once (one write, one round). A box
   * is settled at once: the grant delivered, or its lease given back when its request has gone; no
   * box means the step took nothing. A step past RECOVER_FOR_MS is given up to KeyPool's ledger.
   */
  private async recoverLost(): Promise<void> {
    if (this.recovering) return;
    this.recovering = true;
    try {
      const now = Date.now();
      for (const [attempt, { sinceMs }] of this.lost) {
        if (now - sinceMs <= RECOVER_FOR_MS) continue;
        this.lost.delete(attempt);
        attempt.abandon();
      }
      const [oldest, ...others] = [...this.lost];
      if (!oldest || this.stopped || !(await this.recoverOne(oldest))) return;
      await Promise.all(others.map((entry) => this.recoverOne(entry)));
    } finally {
      this.recovering = false;
      if (this.lost.size === 0 && this.recoverTimer) {
        clearInterval(this.recoverTimer);
        this.recoverTimer = undefined;
      }
    }
  }

  /** One lost step's grant box read and settled: false when the store still did not answer. */
  private async recoverOne([attempt, { providerId }]: [
    DispatchAttempt,
    { providerId: string },
  ]): Promise<boolean> {
    let box: GrantBox | null;
    try {
      box = await attempt.recover();
    } catch {
      return false;
    }
    this.lost.delete(attempt);
    if (!box) return true;
    this.recovered++;
    this.settleBox(providerId, box).catch((err: unknown) =>
      this.logger.warn(`recovering a dispatch for provider ${providerId} failed: ${(err as Error).message}`),
    );
    return true;
  }

  private async send(instance: string, message: GrantMessage): Promise<void> {
    if (instance === this.instanceId) {
      // Same instance: no round trip through Redis.
      this.deliver(message);
      return;
    }
    await this.pubsub.publish(`relay:grant:${instance}`, JSON.stringify(message));
  }
}

interface Loop {
  signal: WakeSignal;
  /** The last dispatch step found the queue empty (an enqueue then wakes the loop). */
  lastEmpty: boolean;
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
