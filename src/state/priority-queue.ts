import { randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { LocalDb } from './local-db.js';

export interface QueueJob<T = unknown> {
  id: string;
  /** 1 = first served. Within one priority, first in first out. */
  priority: number;
  data: T;
  enqueuedAt: number;
}

/**
 * Waiting requests, ordered by priority then arrival, shared by every instance in distributed mode.
 * `take` is a manual fetch: the dispatcher calls it only once it holds capacity for the job, so a
 * job never sits "active" while a higher-priority one arrives behind it.
 */
export abstract class PriorityQueue {
  abstract add<T>(queue: string, job: { id: string; priority: number; data: T }): Promise<void>;
  /** Removes a waiting job; false when it was already taken (or never there). */
  abstract remove(queue: string, id: string): Promise<boolean>;
  abstract take<T>(queue: string): Promise<QueueJob<T> | null>;
  /** Waiting jobs per priority, for the given priorities. */
  abstract counts(queue: string, priorities: number[]): Promise<Record<number, number>>;
  abstract close(): Promise<void>;

  /**
   * The AtomicStore key (logical, unprefixed) of the queue's waiting set, so an admission script can
   * ask "is anybody of priority ≤ p waiting?" in the same atomic step: a sorted set whose scores are
   * `priority * 2^32 + arrival sequence` (BullMQ's own layout), i.e. ZCOUNT 0 .. (p+1)*2^32-1.
   */
  waitingSetKey(queue: string): string {
    checkName(queue);
    return `bull:${queue}:prioritized`;
  }
}

export const PRIORITY_SCORE_FACTOR = 0x100000000;

const QUEUE_NAME = /^[A-Za-z0-9_.-]{1,100}$/;
function checkName(queue: string): void {
  if (!QUEUE_NAME.test(queue)) throw new Error(`invalid queue name ${JSON.stringify(queue)}`);
}

/**
 * In-process queue. Its waiting set lives in the same LocalDb as the in-process AtomicStore, in
 * BullMQ's layout, so admission scripts read it exactly as they read BullMQ's set in Redis.
 */
export class MemoryPriorityQueue extends PriorityQueue {
  private readonly jobs = new Map<string, QueueJob>();
  private sequence = 0;

  constructor(private readonly db: LocalDb) {
    super();
  }

  private jobKey(queue: string, id: string): string {
    return `${queue}\u0000${id}`;
  }

  add<T>(queue: string, job: { id: string; priority: number; data: T }): Promise<void> {
    const set = this.waitingSetKey(queue);
    if (!Number.isInteger(job.priority) || job.priority < 1)
      return Promise.reject(new Error('priority must be an integer ≥ 1'));
    this.sequence = (this.sequence + 1) % PRIORITY_SCORE_FACTOR;
    this.db.now = Date.now();
    this.db.zadd(set, job.priority * PRIORITY_SCORE_FACTOR + this.sequence, job.id);
    this.jobs.set(this.jobKey(queue, job.id), { ...job, enqueuedAt: Date.now() });
    return Promise.resolve();
  }

  remove(queue: string, id: string): Promise<boolean> {
    const removed = this.db.zrem(this.waitingSetKey(queue), id) === 1;
    if (removed) this.jobs.delete(this.jobKey(queue, id));
    return Promise.resolve(removed);
  }

  take<T>(queue: string): Promise<QueueJob<T> | null> {
    const set = this.waitingSetKey(queue);
    const first = this.db.zrange(set, 0, 0)[0];
    if (!first) return Promise.resolve(null);
    this.db.zrem(set, first.member);
    const key = this.jobKey(queue, first.member);
    const job = this.jobs.get(key) as QueueJob<T> | undefined;
    this.jobs.delete(key);
    return Promise.resolve(job ?? null);
  }

  counts(queue: string, priorities: number[]): Promise<Record<number, number>> {
    const set = this.waitingSetKey(queue);
    return Promise.resolve(
      Object.fromEntries(
        priorities.map((p) => [
          p,
          this.db.zcount(set, p * PRIORITY_SCORE_FACTOR, (p + 1) * PRIORITY_SCORE_FACTOR - 1),
        ]),
      ),
    );
  }

  close(): Promise<void> {
    this.jobs.clear();
    return Promise.resolve();
  }
}

interface Envelope<T> {
  data: T;
  enqueuedAt: number;
}

/** BullMQ-backed: one BullMQ queue per logical queue, priorities 1..n (never 0: unprioritised jobs jump the line). */
export class BullPriorityQueue extends PriorityQueue {
  private readonly queues = new Map<string, Queue>();
  private readonly workers = new Map<string, Worker>();
  private readonly token = randomUUID();

  constructor(
    private readonly connection: Redis,
    private readonly prefix: string,
  ) {
    super();
  }

  private queue(name: string): Queue {
    checkName(name);
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(name, { connection: this.connection, prefix: `${this.prefix}:bull` });
      // Connection errors are the shared connection's (logged by RedisConnections, rate-limited);
      // without a listener BullMQ prints each one to stderr, once per queue, during a Redis outage.
      q.on('error', () => undefined);
      this.queues.set(name, q);
    }
    return q;
  }

  private worker(name: string): Worker {
    let w = this.workers.get(name);
    if (!w) {
      w = new Worker(name, null, {
        connection: this.connection,
        prefix: `${this.prefix}:bull`,
        autorun: false,
      });
      w.on('error', () => undefined);
      this.workers.set(name, w);
    }
    return w;
  }

  async add<T>(queue: string, job: { id: string; priority: number; data: T }): Promise<void> {
    if (!Number.isInteger(job.priority) || job.priority < 1)
      throw new Error('priority must be an integer ≥ 1');
    const envelope: Envelope<T> = { data: job.data, enqueuedAt: Date.now() };
    await this.queue(queue).add('request', envelope, {
      jobId: job.id,
      priority: job.priority,
      removeOnComplete: true,
      removeOnFail: true,
    });
  }

  async remove(queue: string, id: string): Promise<boolean> {
    // Atomic truth first: whoever removes the id from the prioritized set owns the job (BullMQ's
    // fetch pops from that set too). Queue.remove alone answers 1 for a job that no longer exists.
    const q = this.queue(queue);
    if ((await this.connection.zrem(q.keys.prioritized!, id)) !== 1) return false;
    await q.remove(id).catch(() => undefined);
    return true;
  }

  async take<T>(queue: string): Promise<QueueJob<T> | null> {
    this.queue(queue);
    const worker = this.worker(queue);
    const job = await worker.getNextJob(this.token, { block: false });
    if (!job?.id) return null;
    const envelope = job.data as Envelope<T>;
    await job.moveToCompleted(null, this.token, false);
    return { id: job.id, priority: job.priority, data: envelope.data, enqueuedAt: envelope.enqueuedAt };
  }

  async counts(queue: string, priorities: number[]): Promise<Record<number, number>> {
    const counts = await this.queue(queue).getCountsPerPriority(priorities);
    return Object.fromEntries(priorities.map((p) => [p, Number(counts[String(p)] ?? 0)]));
  }

  async close(): Promise<void> {
    await Promise.all([...this.workers.values()].map((w) => w.close()));
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    this.workers.clear();
    this.queues.clear();
  }
}
