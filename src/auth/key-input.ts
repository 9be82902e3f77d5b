import type { Priority } from '../common/principal.js';
import type { ApiKeyInput, ApiKeyPatch } from './api-keys.service.js';
import type { CreateApiKeyDto, UpdateApiKeyDto } from './dto/api-key.dto.js';
import { budgetInput } from './dto/budget.dto.js';

export function keyInputFrom(dto: CreateApiKeyDto): ApiKeyInput {
  return {
    name: dto.name,
    role: dto.role,
    expiresAt: dto.expires_at ? new Date(dto.expires_at) : null,
    rpm: dto.limits?.rpm ?? null,
    tpm: dto.limits?.tpm ?? null,
    allowedModels: dto.allowed_models ?? null,
    maxPriority: dto.max_priority,
    teamId: dto.team_id,
    budget: budgetInput(dto.budget) ?? null,
    captureBodies: dto.capture_bodies ?? false,
  };
}

/**
 * A PATCH body → the patch (undefined: unchanged). Validation already ran with CreateApiKeyDto's
 * decorators; `null` means what it means at creation: none for the nullable fields, the default for
 * `max_priority` (high) and `capture_bodies` (false).
 */
export function keyPatchFrom(dto: UpdateApiKeyDto): ApiKeyPatch {
  const maxPriority = dto.max_priority as Priority | null | undefined;
  const captureBodies = dto.capture_bodies as boolean | null | undefined;
  return {
    name: dto.name,
    expiresAt:
      dto.expires_at === undefined ? undefined : dto.expires_at === null ? null : new Date(dto.expires_at),
    limits:
      dto.limits === undefined
        ? undefined
        : dto.limits === null
          ? null
          : { rpm: dto.limits.rpm, tpm: dto.limits.tpm },
    allowedModels: dto.allowed_models,
    maxPriority: maxPriority === null ? 'high' : maxPriority,
    teamId: dto.team_id,
    budget: budgetInput(dto.budget),
    captureBodies: captureBodies === null ? false : captureBodies,
  };
}

/** The fields a PATCH may carry, for the "send at least one" answer. */
export const KEY_PATCH_FIELDS =
  'name, limits, budget, allowed_models, max_priority, team_id, capture_bodies, expires_at';
