import { Inject, Injectable } from '@nestjs/common';
import type { AcquireResult } from '../key-pool/key-pool.types.js';
import { KeyPoolService } from '../key-pool/key-pool.service.js';
import { PriorityQueue } from '../state/priority-queue.js';
import { combineGates, QUEUE_GATE, type StaticGate } from './admission-gates.js';

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

  constructor(
    private readonly keyPool: KeyPoolService,
    @Inject(PriorityQueue) private readonly queue: PriorityQueue,
  ) {}

  contribute(contribution: GateContribution): void {
    this.contributions.push(contribution);
    this.gate = combineGates([QUEUE_GATE, ...this.contributions.map((c) => c.gate)]);
  }

  /** `priority` 1 urgent … 4 low; `bypassQueue` only for the dispatcher that serves the queue. */
  tryAcquire(
    providerId: string,
    priority: number,
    bypassQueue: boolean,
    excludeKeyIds?: readonly string[],
  ): Promise<AcquireResult> {
    const keys: string[] = [this.queue.waitingSetKey(providerId)];
    const args: (string | number)[] = [priority, bypassQueue ? 1 : 0];
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
