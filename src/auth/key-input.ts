import type { ApiKeyInput } from './api-keys.service.js';
import type { CreateApiKeyDto } from './dto/api-key.dto.js';
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
