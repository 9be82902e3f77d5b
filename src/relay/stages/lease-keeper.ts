import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import type { Principal } from '../../common/principal.js';
import type { KeyLease, KeyOutcome } from '../../key-pool/key-pool.types.js';
import { KeyPoolService } from '../../key-pool/services/key-pool.service.js';
import { RelayDispatcher } from '../dispatcher.js';
import type { TokenCounts } from '../../spend/services/budget.service.js';
import { AnswerCharge } from '../infrastructure/answer-charge.js';
import { SpendBudgets, type BudgetHold } from '../infrastructure/spend-budgets.js';

/** What the answer's lease carries to its release: whom to charge, and the spend hold to settle. */
interface Answering {
  principal: Principal;
  hold: BudgetHold | null;
  /** The model the provider served (prices the settlement, as the request log prices the row). */
  model: string | null;
}

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
  /** Leases that carry the client's answer → its principal (their release charges its tokens). */
  private readonly answering = new WeakMap<KeyLease, Answering>();

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly keyPool: KeyPoolService,
    private readonly dispatcher: RelayDispatcher,
    private readonly charge: AnswerCharge,
    private readonly budgets: SpendBudgets,
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
  async release(lease: KeyLease, outcome: KeyOutcome, usage: TokenCounts | null = null): Promise<void> {
    this.held.delete(lease);
    // the answer's lease: the client key's tokens are charged, and its spend reservation settled to
    // the actual cost, in the same store call (AnswerCharge)
    const answering = this.answering.get(lease);
    this.answering.delete(lease);
    const principal = answering?.principal;
    const tokens = principal ? Math.max(0, Math.floor(outcome.tokens ?? 0)) : 0;
    const spend = answering
      ? this.budgets.settlement(answering.hold, lease.providerId, answering.model, usage)
      : null;
    const rider =
      tokens > 0 || spend ? this.charge.rider(principal, tokens, spend?.settlement ?? null) : null;
    const reported = this.keyPool.report(lease, outcome, rider);
    // a release queued behind the one in flight (KeyPoolService's batching) is handed off when it goes
    this.keyPool.afterReleaseSent(lease, () => this.dispatcher.capacityReleased(lease.providerId));
    const result = await reported;
    if (tokens > 0) this.charge.settle(principal, tokens, rider, result);
    // No rider (a Redis Cluster: other slots) → the settlement runs as its own step now. A rider
    // whose release's answer was lost may or may not have run: settlements are idempotent, so it is sent again.
    if (spend && answering?.hold)
      void this.budgets.settled(
        answering.hold,
        spend,
        rider === null ? 'alone' : result.rode === true ? 'rode' : 'lost',
      );
  }

  /**
   * The lease carries the client's answer: its release also charges the client key's tokens and
   * settles the request's spend hold (priced at `model` on the lease's provider).
   */
  answers(
    lease: KeyLease,
    principal: Principal | undefined,
    hold: BudgetHold | null = null,
    model: string | null = null,
  ): void {
    if (principal) this.answering.set(lease, { principal, hold, model });
  }

  /** The lease is still held (not released yet): a sync check, so the common path awaits nothing. */
  isHeld(lease: KeyLease): boolean {
    return this.held.has(lease);
  }

  /** A path that left the lease held (an unexpected throw) gives it back. */
  async releaseIfHeld(lease: KeyLease): Promise<void> {
    if (this.held.has(lease)) await this.release(lease, { error: 'aborted' }).catch(() => undefined);
  }
}
