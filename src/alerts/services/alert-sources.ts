import { Inject, Injectable, Logger, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import type { KeyLease, KeyOutcome, ReportResult } from '../../key-pool/key-pool.types.js';
import { KeyPoolService } from '../../key-pool/services/key-pool.service.js';
import { BreakerService, type BreakerTransitionEvent } from '../../routing/services/breaker.service.js';
import { AtomicStore } from '../../state/atomic-store.js';
import { TransitionMemory } from '../domain/events.js';
import { onceKey, onceScript } from '../infrastructure/once.script.js';
import { AlertsService } from './alerts.service.js';

/** A key refused by its upstream is announced at most once per this long (it stays invalid until re-enabled). */
const BROKEN_ONCE_MS = 60_000;

/**
 * Where events come from, each announced once per transition and on one instance:
 * - `key.cooling`: a report whose 429 started a cooldown (KeyPool's outcome listener). Reports during
 *   the same cooldown (in-flight requests answering 429 too, extensions) are filtered in process, then
 *   a store claim (`onceScript`, only on such a report) makes it one announcement across instances.
 * - `key.broken`: a report whose 401/403 marked the key invalid; the same two filters.
 * - `breaker.opened` / `breaker.closed`: BreakerService's transitions, which only the instance whose
 *   store step made the transition sees.
 */
@Injectable()
export class AlertSources implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('Alerts');
  private readonly cooling = new TransitionMemory();
  private readonly broken = new TransitionMemory();
  private readonly removers: (() => void)[] = [];

  constructor(
    private readonly alerts: AlertsService,
    private readonly keyPool: KeyPoolService,
    private readonly breakers: BreakerService,
    @Inject(AtomicStore) private readonly store: AtomicStore,
  ) {}

  onModuleInit(): void {
    this.removers.push(
      this.keyPool.onOutcome((lease, outcome, result) => this.onOutcome(lease, outcome, result)),
      this.breakers.onTransition((e) => this.onBreaker(e)),
    );
  }

  onModuleDestroy(): void {
    for (const remove of this.removers.splice(0)) remove();
  }

  private onOutcome(lease: KeyLease, outcome: KeyOutcome, result: ReportResult): void {
    const now = Date.now();
    if (result.cooldownUntilMs !== null && this.cooling.first(lease.keyId, result.cooldownUntilMs, now)) {
      const untilMs = result.cooldownUntilMs;
      void this.once('key.cooling', lease.keyId, Math.max(1000, untilMs - now)).then((first) => {
        if (!first) return;
        this.alerts.emit('key.cooling', {
          ...keyData(lease),
          cooldown_until: new Date(untilMs).toISOString(),
          cooldown_seconds: Math.max(1, Math.ceil((untilMs - now) / 1000)),
          cooldown_source: result.cooldownSource,
          http_status: outcome.status ?? null,
        });
      });
    }
    if (result.invalidated && this.broken.first(lease.keyId, now + BROKEN_ONCE_MS, now)) {
      void this.once('key.broken', lease.keyId, BROKEN_ONCE_MS).then((first) => {
        if (!first) return;
        this.alerts.emit('key.broken', {
          ...keyData(lease),
          state: 'invalid',
          reason: 'refused_by_upstream',
          http_status: outcome.status ?? null,
        });
      });
    }
  }

  private onBreaker(e: BreakerTransitionEvent): void {
    if (e.to === 'half_open') return;
    void this.providerName(e.target.providerId).then((providerName) => {
      const target = { provider_id: e.target.providerId, provider_name: providerName, model: e.target.model };
      if (e.to === 'open')
        this.alerts.emit('breaker.opened', {
          ...target,
          open_until: e.openUntilMs > 0 ? new Date(e.openUntilMs).toISOString() : null,
          consecutive_failures: e.consecutiveFailures,
          window_failures: e.windowFailures,
          window_requests: e.windowRequests,
        });
      else this.alerts.emit('breaker.closed', target);
    });
  }

  /** The shared claim; a store that does not answer lets the event through (a duplicate beats a miss). */
  private async once(type: string, subject: string, ttlMs: number): Promise<boolean> {
    try {
      return (await this.store.run(onceScript, [onceKey(type, subject)], [Math.ceil(ttlMs)])) === 1;
    } catch (err) {
      this.logger.warn(`alert de-duplication store step failed (${String(err)}); announcing anyway`);
      return true;
    }
  }

  private async providerName(id: string): Promise<string | null> {
    const all = await this.keyPool.providerSummaries().catch(() => []);
    return all.find((p) => p.id === id)?.name ?? null;
  }
}

function keyData(lease: KeyLease): Record<string, unknown> {
  return {
    key_id: lease.keyId,
    key_label: lease.keyLabel,
    provider_id: lease.providerId,
    provider_name: lease.providerName,
  };
}
