import { Injectable } from '@nestjs/common';
import type { AcquireResult } from '../key-pool/key-pool.types.js';
import { KeyPoolService } from '../key-pool/services/key-pool.service.js';
import { queueKeys } from '../state/priority-queue.js';
import { combineGates, QUEUE_GATE, QueueMode, type StaticGate } from './admission-gates.js';

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

  constructor(private readonly keyPool: KeyPoolService) {}

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
   * The dispatcher's step: a lease and the head of the provider's queue together, or a refusal
   * (`gate`/`queue_empty` when nobody waits). On success `gateOutput` is the popped job (decodePopped;
   * empty when only expired jobs were left: the lease is then the caller's to give back). With
   * `grant` (Redis), a job of another instance is granted by the script itself (published on
   * `grant.channel` + its instance; `gateOutput` then starts with GRANT_PUBLISHED).
   */
  dispatch(providerId: string, grant?: { channel: string; instance: string }): Promise<AcquireResult> {
    return this.acquire(providerId, 1, QueueMode.dispatch, undefined, grant);
  }

  private acquire(
    providerId: string,
    priority: number,
    mode: QueueMode,
    excludeKeyIds?: readonly string[],
    grant?: { channel: string; instance: string },
  ): Promise<AcquireResult> {
    const [wait, jobs] = queueKeys(providerId);
    const keys: string[] = [wait, jobs];
    const args: (string | number)[] = [priority, mode, grant?.channel ?? '', grant?.instance ?? ''];
    for (const c of this.contributions) {
      const extra = c.inputs(providerId);
      keys.push(...extra.keys);
      args.push(...extra.args);
    }
    // A store outage propagates as is: the global filter answers it 503 with Retry-After
    // (isConnectivityError), while a genuine bug stays a visible 500.
    return this.keyPool.acquire(providerId, { gate: { gate: this.gate, keys, args }, excludeKeyIds });
  }
}
