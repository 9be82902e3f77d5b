import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
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
export class LeaseKeeper implements OnApplicationShutdown {
  private readonly renewEveryMs: number;
  /** Held leases → when each was last renewed (or taken). */
  private readonly held = new Map<KeyLease, number>();
  /**
   * One timer for every held lease (not one per request), ticking at half the renewal period while
   * any is held: a lease is renewed between one and one and a half periods after the last renewal,
   * so at most half a TTL apart.
   */
  private ticker: NodeJS.Timeout | null = null;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly keyPool: KeyPoolService,
    private readonly dispatcher: RelayDispatcher,
  ) {
    this.renewEveryMs = Math.max(500, Math.floor((config.keyPool.leaseTtlSeconds * 1000) / 3));
  }

  hold(lease: KeyLease): void {
    this.held.set(lease, Date.now());
    if (this.ticker === null) {
      this.ticker = setInterval(() => this.renewDue(), Math.floor(this.renewEveryMs / 2));
      this.ticker.unref();
    }
  }

  onApplicationShutdown(): void {
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
  }

  private renewDue(): void {
    const now = Date.now();
    for (const [lease, renewedAt] of this.held) {
      if (now - renewedAt < this.renewEveryMs) continue;
      this.held.set(lease, now);
      void this.keyPool.renew(lease).catch(() => undefined);
    }
    if (this.held.size === 0 && this.ticker !== null) {
      clearInterval(this.ticker);
      this.ticker = null;
    }
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
    this.held.delete(lease);
    const reported = this.keyPool.report(lease, outcome);
    this.dispatcher.capacityReleased(lease.providerId);
    await reported;
  }

  /** A path that left the lease held (an unexpected throw) gives it back. */
  async releaseIfHeld(lease: KeyLease): Promise<void> {
    if (this.held.has(lease)) await this.release(lease, { error: 'aborted' }).catch(() => undefined);
  }
}
