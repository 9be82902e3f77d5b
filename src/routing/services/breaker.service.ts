import { Injectable } from '@nestjs/common';
import type {
  BreakerAdmission,
  BreakerForce,
  BreakerOutcome,
  BreakerView,
  TargetRef,
} from '../routing.types.js';

/**
 * The circuit breaker per target (provider + model), shared by every instance through the
 * AtomicStore (Redis in distributed mode, LocalDb embedded), with an in-process view kept fresh by
 * the store's replies and a pub/sub message on every transition.
 *
 * STUB (contract): wt-breaker fills it in. Signatures are the contract the relay builds against.
 */
@Injectable()
export class BreakerService {
  /**
   * Synchronous, from the in-process view: 'deny' while open (or forced open), 'allow' while closed
   * (or forced closed). An open breaker whose open time has passed answers 'probe' only to the
   * caller that wins the shared probe claim — hence a promise; when closed it resolves at once
   * without touching the store.
   */
  admit(target: TargetRef, forced: BreakerForce): BreakerAdmission | Promise<BreakerAdmission> {
    void target;
    void forced;
    return 'allow';
  }

  /**
   * An attempt's outcome for the breaker: failures (5xx, timeouts, connection errors) are reported
   * at once; successes only when they matter (after failures, or for a probe) — the rest are counted
   * in process and flushed in batches (no store write per request). Never throws; never awaited on
   * the client's path.
   */
  report(target: TargetRef, outcome: BreakerOutcome, probe: boolean): void {
    void target;
    void outcome;
    void probe;
  }

  /** The breakers of these targets, for /api/admin/status, the dashboard and the gauges. */
  views(targets: readonly (TargetRef & { forced: BreakerForce })[]): Promise<BreakerView[]> {
    void targets;
    return Promise.resolve([]);
  }
}
