import { Inject, Injectable } from '@nestjs/common';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import type { KeyLease, KeyOutcome } from '../../key-pool/key-pool.types.js';
import { KeyPoolService } from '../../key-pool/services/key-pool.service.js';
import { RelayDispatcher } from '../dispatcher.js';

/**
 * Keeps an upstream key's lease alive for as long as it is held (waiting for headers, reading a slow
 * body, streaming: renewed three times per TTL), and gives it back with what happened, waking the
 * provider's dispatcher.
 */
@Injectable()
export class LeaseKeeper {
  private readonly renewEveryMs: number;
  private readonly renewals = new WeakMap<KeyLease, NodeJS.Timeout>();

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly keyPool: KeyPoolService,
    private readonly dispatcher: RelayDispatcher,
  ) {
    this.renewEveryMs = Math.max(500, Math.floor((config.keyPool.leaseTtlSeconds * 1000) / 3));
  }

  hold(lease: KeyLease): void {
    const timer = setInterval(() => void this.keyPool.renew(lease).catch(() => undefined), this.renewEveryMs);
    timer.unref();
    this.renewals.set(lease, timer);
  }

  /**
   * The report frees the slot; the dispatcher's hand-off of that slot is started right behind it,
   * without waiting for the report's answer: `report` sends its script synchronously, and the
   * dispatch step's script follows it on the same store connection (in process: runs after it), so
   * the store runs them in that order and the slot is taken by the head of the queue one store
   * round trip after the release instead of two. (Should the order ever be lost — the report's
   * script re-sent after a NOSCRIPT — the dispatch finds the slot still held and the waiters' own
   * loops take it.)
   */
  async release(lease: KeyLease, outcome: KeyOutcome): Promise<void> {
    clearInterval(this.renewals.get(lease));
    this.renewals.delete(lease);
    const reported = this.keyPool.report(lease, outcome);
    this.dispatcher.capacityReleased(lease.providerId);
    await reported;
  }

  /** A path that left the lease held (an unexpected throw) gives it back. */
  async releaseIfHeld(lease: KeyLease): Promise<void> {
    if (this.renewals.has(lease)) await this.release(lease, { error: 'aborted' }).catch(() => undefined);
  }
}
