import type { ApiKey } from './api-key.entity.js';
import type { ApiKeyInput } from './api-keys.service.js';
import type { CreateApiKeyDto } from './dto/api-key.dto.js';

export function keyInputFrom(dto: CreateApiKeyDto): ApiKeyInput {
  return {
    name: dto.name,
    role: dto.role,
    expiresAt: dto.expires_at ? new Date(dto.expires_at) : null,
    rpm: dto.limits?.rpm ?? null,
    tpm: dto.limits?.tpm ?? null,
    allowedModels: dto.allowed_models ?? null,
    maxPriority: dto.max_priority,
  };
}

/** What the audit log records about a key: its settings, never its value or hash. */
export function keyAuditFields(key: ApiKey): Record<string, unknown> {
  return {
    name: key.name,
    owner_id: key.userId,
    role: key.role,
    prefix: key.prefix,
    limits: { rpm: key.rpm, tpm: key.tpm },
    allowed_models: key.allowedModels,
    max_priority: key.maxPriority,
    expires_at: key.expiresAt?.toISOString() ?? null,
  };
}
