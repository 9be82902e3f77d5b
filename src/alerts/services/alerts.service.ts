import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { eventBody, type EventType, type WebhookEvent } from '../domain/events.js';
import { AtomicStore } from '../../state/atomic-store.js';
import { DeliveryRepository } from '../infrastructure/delivery.repository.js';
import { onceKey, onceScript } from '../infrastructure/once.script.js';
import { WebhookDispatcher } from './webhook-dispatcher.service.js';

/** Events waiting for their batched insert; past this many (Postgres down), the oldest are dropped. */
const BUFFER_MAX = 10_000;
/** Events emitted within this window are inserted together. */
const FLUSH_DELAY_MS = 50;
const RETRY_DELAY_MS = 1000;

/**
 * The one way to raise an alert: `emit(type, data)` is synchronous and costs the caller nothing but
 * a push onto an in-memory list. Within 50 ms the list becomes ONE insert (a delivery row per
 * subscribed webhook, `DeliveryRepository.enqueue`); then this instance's dispatcher is woken to send
 * them. Budgets (issue 16 item 2) emit `budget.threshold` here.
 */
@Injectable()
export class AlertsService implements OnApplicationShutdown {
  private readonly logger = new Logger('Alerts');
  private buffer: WebhookEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | null = null;
  private dropped = 0;

  constructor(
    private readonly deliveries: DeliveryRepository,
    private readonly dispatcher: WebhookDispatcher,
    @Inject(AtomicStore) private readonly store: AtomicStore,
  ) {}

  /**
   * `emit`, once per `subject` of `type` across instances for `ttlMs` (the shared once-claim,
   * `alerts-once`): true when this caller emitted it. A store that does not answer lets the event
   * through (a duplicate beats a miss). One store step: call it on a transition, never per request.
   */
  async emitOnce(
    type: EventType,
    subject: string,
    ttlMs: number,
    data: Record<string, unknown>,
  ): Promise<boolean> {
    let first = true;
    try {
      first = (await this.store.run(onceScript, [onceKey(type, subject)], [Math.ceil(ttlMs)])) === 1;
    } catch (err) {
      this.logger.warn(`alert de-duplication store step failed (${String(err)}); announcing anyway`);
    }
    if (first) this.emit(type, data);
    return first;
  }

  /** Queues an event for every webhook subscribed to `type`; returns its id (the body's `id`). */
  emit(type: EventType, data: Record<string, unknown>): string {
    const event: WebhookEvent = { id: randomUUID(), type, created_at: new Date().toISOString(), data };
    this.buffer.push(event);
    if (this.buffer.length > BUFFER_MAX) {
      this.buffer.shift();
      if (this.dropped++ % 1000 === 0)
        this.logger.error(`alert buffer full (database unreachable?): dropped ${this.dropped} event(s)`);
    }
    this.schedule(FLUSH_DELAY_MS);
    return event.id;
  }

  /** Inserts what is buffered now (tests and shutdown). */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    this.flushing = (async () => {
      try {
        const created = await this.deliveries.enqueue(
          batch.map((e) => ({ id: e.id, type: e.type, body: eventBody(e) })),
        );
        if (created > 0) this.dispatcher.kick();
      } catch (err) {
        this.logger.error({ err }, `queueing ${batch.length} alert event(s) failed; retrying`);
        this.buffer = [...batch, ...this.buffer].slice(-BUFFER_MAX);
        this.schedule(RETRY_DELAY_MS);
      }
    })();
    try {
      await this.flushing;
    } finally {
      this.flushing = null;
    }
  }

  async onApplicationShutdown(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush().catch(() => undefined);
  }

  private schedule(delayMs: number): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delayMs);
    this.timer.unref();
  }
}
