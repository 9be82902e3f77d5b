import { Inject, Injectable } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { AuditService } from '../../audit/audit.service.js';
import { ApiError } from '../../common/api-error.js';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import { KeyPoolService } from '../../key-pool/services/key-pool.service.js';
import type { KeyConcurrencySetting } from '../../key-pool/key-pool.types.js';
import { AdaptiveStateRepository } from '../infrastructure/adaptive-state.repository.js';
import { adjustmentView, AdaptiveService, type KeyLearning } from './adaptive.service.js';
import type {
  AdaptiveKeyListItemDto,
  AdaptiveStatsDto,
  AdaptiveSummaryDto,
  ResetLearningResponseDto,
  SetLimitResponseDto,
  SummaryAdjustmentDto,
  ToggleModeDto,
  ToggleModeResponseDto,
} from '../dto/adaptive.dto.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Seed 001's admin API (/api/admin/adaptive): field names and rules, messages in English. */
@Injectable()
export class AdaptiveAdminService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly keyPool: KeyPoolService,
    private readonly adaptive: AdaptiveService,
    private readonly audit: AuditService,
    private readonly states: AdaptiveStateRepository,
  ) {}

  /** Sets max_concurrent and writes its audit row in one transaction; the caches drop after the commit. */
  private async setMaxConcurrent(
    keyId: string,
    next: number | null,
    request: FastifyRequest,
    audit: (previous: number | null) => { action: string; changes: Record<string, unknown> },
  ): Promise<{ previous: number | null; providerId: string }> {
    const changed = await this.states.inTransaction(async (m) => {
      const result = await this.keyPool.setMaxConcurrent(keyId, next, m);
      if (!result) throw ApiError.notFound('Key not found', 'key_not_found');
      const { action, changes } = audit(result.previous);
      await this.audit.record(m, request, { action, targetType: 'provider_key', targetId: keyId, changes });
      return result;
    });
    await this.keyPool.invalidate(changed.providerId);
    return changed;
  }

  private async key(id: string): Promise<KeyConcurrencySetting> {
    const found = UUID.test(id) ? (await this.keyPool.concurrencySettings({ keyId: id }))[0] : undefined;
    if (!found) throw ApiError.notFound('Key not found', 'key_not_found');
    return found;
  }

  private effective(maxConcurrent: number | null, learned: number | null): number {
    return maxConcurrent ?? learned ?? this.config.adaptive.initialLimit;
  }

  async listKeys(providerId?: string): Promise<AdaptiveKeyListItemDto[]> {
    const keys = (await this.keyPool.concurrencySettings(providerId ? { providerId } : {})).filter(
      (k) => k.maxConcurrent === null,
    );
    const learning = await this.adaptive.learning(keys);
    return keys.map((k) => {
      const l = learning.get(k.keyId)!;
      return {
        id: k.keyId,
        name: k.label,
        provider_id: k.providerId,
        is_adaptive: true,
        max_concurrent: null,
        effective_limit: this.effective(null, l.learnedLimit),
        learned_max_concurrent: l.learnedLimit,
        concurrent_429_count: l.concurrency429,
        rpm_429_count: l.rpm429 + l.tpm429,
      };
    });
  }

  async setMode(id: string, dto: ToggleModeDto, request: FastifyRequest): Promise<ToggleModeResponseDto> {
    const k = await this.key(id);
    let next: number | null;
    let message: string;
    if (dto.enabled) {
      next = null;
      message =
        'Switched to adaptive mode; the system learns and adjusts the concurrency limit automatically';
    } else {
      if (dto.fixed_limit === undefined || dto.fixed_limit === null)
        throw ApiError.badRequest('fixed_limit is required when disabling adaptive mode', 'fixed_limit');
      next = dto.fixed_limit;
      message = `Switched to fixed limit mode; concurrency limit set to ${next}`;
    }
    await this.setMaxConcurrent(k.keyId, next, request, (previous) => ({
      action: 'adaptive_key.mode',
      changes: {
        max_concurrent: { from: previous, to: next },
        adaptive: { from: previous === null, to: next === null },
      },
    }));
    const learned =
      next === null
        ? ((await this.adaptive.learnedLimits(k.providerId, [k.keyId])).get(k.keyId) ?? null)
        : null;
    return {
      message,
      key_id: k.keyId,
      is_adaptive: next === null,
      max_concurrent: next,
      effective_limit: this.effective(next, learned),
    };
  }

  async stats(id: string): Promise<AdaptiveStatsDto> {
    const k = await this.key(id);
    const l = (await this.adaptive.learning([k])).get(k.keyId)!;
    return statsView(k, l, this.effective(k.maxConcurrent, l.learnedLimit));
  }

  async resetLearning(id: string, request: FastifyRequest): Promise<ResetLearningResponseDto> {
    const k = await this.key(id);
    const before = (await this.adaptive.learning([k])).get(k.keyId)!;
    // The audit row first, the reset (Redis, then Postgres) inside its transaction: a refused row
    // resets nothing, a failed reset leaves no row.
    await this.states.inTransaction(async (m) => {
      await this.audit.record(m, request, {
        action: 'adaptive_key.reset_learning',
        targetType: 'provider_key',
        targetId: k.keyId,
        changes: {
          learned_limit: { from: before.learnedLimit, to: null },
          concurrent_429_count: { from: before.concurrency429, to: 0 },
          rpm_429_count: { from: before.rpm429 + before.tpm429, to: 0 },
          adjustment_count: { from: before.adjustments.length, to: 0 },
        },
      });
      await this.adaptive.resetLearning(k.providerId, k.keyId, m);
    });
    return { message: 'Learning state reset', key_id: k.keyId };
  }

  async setFixedLimit(id: string, limit: number, request: FastifyRequest): Promise<SetLimitResponseDto> {
    const k = await this.key(id);
    const changed = await this.setMaxConcurrent(k.keyId, limit, request, (previous) => ({
      action: 'adaptive_key.limit',
      changes: {
        max_concurrent: { from: previous, to: limit },
        previous_mode: previous === null ? 'adaptive' : 'fixed',
      },
    }));
    const previousMode = changed.previous === null ? 'adaptive' : 'fixed';
    return {
      message: `Set to fixed limit mode; concurrency limit is ${limit}`,
      key_id: k.keyId,
      is_adaptive: false,
      max_concurrent: limit,
      previous_mode: previousMode,
    };
  }

  async summary(): Promise<AdaptiveSummaryDto> {
    const keys = (await this.keyPool.concurrencySettings()).filter((k) => k.maxConcurrent === null);
    const learning = await this.adaptive.learning(keys);
    let concurrent = 0;
    let rpm = 0;
    let adjustments = 0;
    const recent: SummaryAdjustmentDto[] = [];
    for (const k of keys) {
      const l = learning.get(k.keyId)!;
      concurrent += l.concurrency429;
      rpm += l.rpm429 + l.tpm429;
      adjustments += l.adjustments.length;
      for (const a of l.adjustments)
        recent.push({ key_id: k.keyId, key_name: k.label, ...adjustmentView(a) });
    }
    recent.sort((a, b) => (a.timestamp < b.timestamp ? 1 : a.timestamp > b.timestamp ? -1 : 0));
    return {
      total_adaptive_keys: keys.length,
      total_concurrent_429_errors: concurrent,
      total_rpm_429_errors: rpm,
      total_adjustments: adjustments,
      recent_adjustments: recent.slice(0, 10),
    };
  }
}

function statsView(k: KeyConcurrencySetting, l: KeyLearning, effective: number): AdaptiveStatsDto {
  return {
    adaptive_mode: k.maxConcurrent === null,
    max_concurrent: k.maxConcurrent,
    effective_limit: effective,
    learned_limit: l.learnedLimit,
    concurrent_429_count: l.concurrency429,
    rpm_429_count: l.rpm429 + l.tpm429,
    last_429_at: l.last429At ? l.last429At.toISOString() : null,
    last_429_type: l.last429Type,
    adjustment_count: l.adjustments.length,
    recent_adjustments: [...l.adjustments].reverse().map(adjustmentView),
  };
}
