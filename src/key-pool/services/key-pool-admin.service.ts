import { Inject, Injectable, Logger } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import { AuditService } from '../../audit/audit.service.js';
import { ApiError } from '../../common/api-error.js';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import type {
  CreateProviderKeyDto,
  HealReportDto,
  KeyUsageDto,
  ProviderKeyDto,
  UpdateProviderKeyDto,
} from '../dto/provider-key.dto.js';
import type { CreateProviderDto, ProviderDto, UpdateProviderDto } from '../dto/provider.dto.js';
import { KeyCipher, maskKey, providerKeyAad } from '../domain/key-cipher.js';
import { isRedactedPlaceholder, redactHeaderValues } from '../domain/header-redaction.js';
import { checkPricing, type ProviderPricing } from '../domain/pricing.js';
import type { KeyWindow } from '../key-pool.types.js';
import { KeyPoolService } from './key-pool.service.js';
import { callerCan } from '../../common/permissions.js';
import { keyState, type ProviderKey, type ProviderKeyState } from '../infrastructure/provider-key.entity.js';
import { ProviderKeyRepository } from '../infrastructure/provider-key.repository.js';
import type { Provider } from '../infrastructure/provider.entity.js';
import { isUniqueViolation, ProviderRepository } from '../infrastructure/provider.repository.js';
import { UpstreamGuardService, type Resolver, systemResolver } from './upstream-guard.service.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;
/** Headers a provider may not set: credentials belong in upstream keys, the rest is the relay's job. */
const FORBIDDEN_HEADERS = new Set([
  'authorization',
  'proxy-authorization',
  'x-api-key',
  'api-key',
  'cookie',
  'host',
  'content-length',
  'content-type',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'expect',
]);
const MAX_HEADERS = 20;

export interface WriteContext {
  request: FastifyRequest | null;
  source: 'api' | 'file';
  /** DNS resolution for the base_url check; null = literal addresses only (PROVIDERS_FILE at start). */
  resolve: Resolver | null;
}

const API_CONTEXT = (request: FastifyRequest): WriteContext => ({
  request,
  source: 'api',
  resolve: systemResolver,
});

function iso(d: Date | null | undefined): string | null {
  return d ? d.toISOString() : null;
}

/** Admin API logic for providers and upstream keys: validation, encryption, audit, cache invalidation. */
@Injectable()
export class KeyPoolAdminService {
  private readonly logger = new Logger('KeyPoolAdmin');

  constructor(
    private readonly providers: ProviderRepository,
    private readonly keys: ProviderKeyRepository,
    private readonly pool: KeyPoolService,
    private readonly cipher: KeyCipher,
    private readonly guard: UpstreamGuardService,
    private readonly audit: AuditService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  static api(request: FastifyRequest): WriteContext {
    return API_CONTEXT(request);
  }

  /**
   * Whether this caller reads provider header values in clear: only who may edit providers
   * (`providers` write, i.e. admins). Everyone else gets previews (domain/header-redaction.ts).
   */
  static revealsHeaders(request: FastifyRequest): boolean {
    const principal = request.principal;
    return !!principal && callerCan(principal, 'providers', 'write');
  }

  // ---- providers ----------------------------------------------------------------------------

  /** `revealHeaders`: header values in clear (admins) or as previews (KeyPoolAdminService.revealsHeaders). */
  async listProviders(revealHeaders: boolean): Promise<ProviderDto[]> {
    const providers = await this.providers.allByName();
    const keys = await this.keys.stateColumnsOfAll();
    return providers.map((p) =>
      this.providerView(
        p,
        keys.filter((k) => k.providerId === p.id),
        revealHeaders,
      ),
    );
  }

  async getProvider(id: string, revealHeaders: boolean): Promise<ProviderDto> {
    const p = await this.findProvider(id);
    return this.providerView(p, await this.keys.ofProvider(p.id), revealHeaders);
  }

  async findProvider(id: string): Promise<Provider> {
    const p = UUID.test(id) ? await this.providers.byId(id) : null;
    if (!p) throw ApiError.notFound(`provider ${id} not found`, 'provider_not_found');
    return p;
  }

  async findProviderByName(name: string): Promise<Provider | null> {
    return this.providers.byNameIgnoringCase(name);
  }

  async createProvider(
    dto: CreateProviderDto,
    ctx: WriteContext,
    id: string = randomUUID(),
  ): Promise<Provider> {
    const baseUrl = await this.checkBaseUrl(dto.base_url, ctx);
    const headers = checkHeaders(dto.headers ?? {});
    const pricing = pricingOf(dto.pricing ?? {});
    await this.assertNameFree(dto.name, null);
    const provider = this.providers.build({
      id,
      name: dto.name,
      kind: dto.kind ?? 'openai',
      baseUrl,
      models: dto.models ?? [],
      rpm: dto.rpm ?? null,
      burst: dto.burst ?? null,
      timeoutMs: dto.timeout_ms ?? 60000,
      enabled: dto.enabled ?? true,
      headers,
      pricing,
      source: ctx.source,
    });
    try {
      await this.providers.insertWithAudit(provider, (m) =>
        this.audit.record(m, ctx.request, {
          action: 'provider.create',
          targetType: 'provider',
          targetId: provider.id,
          changes: {
            name: provider.name,
            kind: provider.kind,
            base_url: provider.baseUrl,
            models: provider.models,
            rpm: provider.rpm,
            burst: provider.burst,
            timeout_ms: provider.timeoutMs,
            enabled: provider.enabled,
            header_names: Object.keys(headers),
            pricing,
            source: ctx.source,
          },
        }),
      );
    } catch (err) {
      if (isUniqueViolation(err)) throw nameTaken(dto.name);
      throw err;
    }
    // Caches keyed on providers (routable list, prices) learn about it here and on every instance.
    await this.pool.invalidate(provider.id);
    return (await this.providers.byId(provider.id))!;
  }

  /** Applies the given fields; returns the provider and whether anything changed. */
  async updateProvider(
    id: string,
    dto: UpdateProviderDto,
    ctx: WriteContext,
  ): Promise<{ provider: Provider; changed: boolean }> {
    const p = await this.findProvider(id);
    const changes: Record<string, unknown> = {};
    const patch: Partial<Provider> = {};
    const set = <K extends keyof Provider>(field: K, value: Provider[K], apiName: string) => {
      if (JSON.stringify(p[field]) !== JSON.stringify(value)) {
        patch[field] = value;
        changes[apiName] = { from: p[field], to: value };
      }
    };
    if (dto.name !== undefined) {
      if (dto.name.toLowerCase() !== p.name.toLowerCase()) await this.assertNameFree(dto.name, p.id);
      set('name', dto.name, 'name');
    }
    if (dto.kind !== undefined) set('kind', dto.kind, 'kind');
    if (dto.base_url !== undefined) set('baseUrl', await this.checkBaseUrl(dto.base_url, ctx), 'base_url');
    if (dto.models !== undefined) set('models', dto.models, 'models');
    if (dto.rpm !== undefined) set('rpm', dto.rpm, 'rpm');
    if (dto.burst !== undefined) set('burst', dto.burst, 'burst');
    if (dto.timeout_ms !== undefined) set('timeoutMs', dto.timeout_ms, 'timeout_ms');
    if (dto.enabled !== undefined) set('enabled', dto.enabled, 'enabled');
    if (dto.headers !== undefined) {
      const headers = checkHeaders(dto.headers);
      if (JSON.stringify(headers) !== JSON.stringify(p.headers)) {
        patch.headers = headers;
        changes.header_names = { from: Object.keys(p.headers), to: Object.keys(headers) };
      }
    }
    if (dto.pricing !== undefined) set('pricing', pricingOf(dto.pricing), 'pricing');
    if (ctx.source === 'file' && p.source !== 'file') patch.source = 'file';
    if (Object.keys(patch).length === 0) return { provider: p, changed: false };
    try {
      await this.providers.updateWithAudit(p.id, patch, async (m) => {
        if (Object.keys(changes).length > 0) {
          await this.audit.record(m, ctx.request, {
            action: 'provider.update',
            targetType: 'provider',
            targetId: p.id,
            changes: { ...changes, source: ctx.source },
          });
        }
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw nameTaken(dto.name ?? p.name);
      throw err;
    }
    await this.pool.invalidate(p.id);
    return { provider: (await this.providers.byId(p.id))!, changed: true };
  }

  async deleteProvider(id: string, ctx: WriteContext): Promise<void> {
    const p = await this.findProvider(id);
    const keyIds = await this.keys.idsOfProvider(p.id);
    await this.providers.deleteWithAudit(p.id, (m) =>
      this.audit.record(m, ctx.request, {
        action: 'provider.delete',
        targetType: 'provider',
        targetId: p.id,
        changes: { name: p.name, keys_deleted: keyIds.length, source: ctx.source },
      }),
    );
    await this.pool.invalidate(p.id);
    await Promise.all(keyIds.map((keyId) => this.pool.forgetKey(p.id, keyId).catch(() => undefined)));
  }

  private async assertNameFree(name: string, exceptId: string | null): Promise<void> {
    const other = await this.findProviderByName(name);
    if (other && other.id !== exceptId) throw nameTaken(name);
  }

  private async checkBaseUrl(raw: string, ctx: WriteContext): Promise<string> {
    const verdict = await this.guard.checkBaseUrl(raw, ctx.resolve);
    if (!verdict.ok) throw ApiError.badRequest(verdict.message, 'base_url', verdict.code);
    return verdict.url;
  }

  // ---- keys ---------------------------------------------------------------------------------

  async listKeys(providerId: string): Promise<ProviderKeyDto[]> {
    const p = await this.findProvider(providerId);
    const keys = await this.keys.ofProviderForListing(p.id);
    const windows = await this.safeWindows(
      p.id,
      keys.map((k) => k.id),
    );
    return keys.map((k) => this.keyView(k, windows.get(k.id)));
  }

  async getKey(id: string): Promise<ProviderKeyDto> {
    const k = await this.findKey(id);
    const windows = await this.safeWindows(k.providerId, [k.id]);
    return this.keyView(k, windows.get(k.id));
  }

  async findKey(id: string): Promise<ProviderKey> {
    const k = UUID.test(id) ? await this.keys.byId(id) : null;
    if (!k) throw ApiError.notFound(`upstream key ${id} not found`, 'provider_key_not_found');
    return k;
  }

  async keysOf(providerId: string): Promise<ProviderKey[]> {
    return this.keys.ofProvider(providerId);
  }

  /** The decrypted value (PROVIDERS_FILE compares before re-encrypting); null when broken. */
  decryptValue(k: ProviderKey): string | null {
    try {
      return this.cipher.decrypt(
        { keyId: k.encryptionKeyId, ciphertext: k.ciphertext },
        providerKeyAad(k.id),
      );
    } catch {
      return null;
    }
  }

  async createKey(providerId: string, dto: CreateProviderKeyDto, ctx: WriteContext): Promise<ProviderKey> {
    const p = await this.findProvider(providerId);
    await this.assertLabelFree(p.id, dto.label, null);
    const id = randomUUID();
    const sealed = this.cipher.encrypt(dto.key, providerKeyAad(id));
    const key = this.keys.build({
      id,
      providerId: p.id,
      label: dto.label,
      ciphertext: sealed.ciphertext,
      encryptionKeyId: sealed.keyId,
      masked: maskKey(dto.key),
      priority: dto.priority ?? 1,
      maxRpm: dto.max_rpm ?? null,
      maxTpm: dto.max_tpm ?? null,
      maxConcurrent: dto.max_concurrent ?? null,
      enabled: dto.enabled ?? true,
      source: ctx.source,
    });
    try {
      await this.keys.insertWithAudit(key, (m) =>
        this.audit.record(m, ctx.request, {
          action: 'provider_key.create',
          targetType: 'provider_key',
          targetId: id,
          changes: {
            provider_id: p.id,
            label: key.label,
            masked: key.masked,
            priority: key.priority,
            max_rpm: key.maxRpm,
            max_tpm: key.maxTpm,
            max_concurrent: key.maxConcurrent,
            enabled: key.enabled,
            source: ctx.source,
          },
        }),
      );
    } catch (err) {
      if (isUniqueViolation(err)) throw labelTaken(dto.label);
      throw err;
    }
    await this.pool.invalidate(p.id);
    return (await this.keys.byId(id))!;
  }

  async updateKey(
    id: string,
    dto: UpdateProviderKeyDto,
    ctx: WriteContext,
  ): Promise<{ key: ProviderKey; changed: boolean }> {
    const k = await this.findKey(id);
    const patch: Partial<ProviderKey> = {};
    const changes: Record<string, unknown> = {};
    const set = <F extends keyof ProviderKey>(field: F, value: ProviderKey[F], apiName: string) => {
      if (k[field] !== value) {
        patch[field] = value;
        changes[apiName] = { from: k[field], to: value };
      }
    };
    if (dto.label !== undefined && dto.label !== k.label) {
      if (dto.label.toLowerCase() !== k.label.toLowerCase())
        await this.assertLabelFree(k.providerId, dto.label, k.id);
      set('label', dto.label, 'label');
    }
    if (dto.priority !== undefined) set('priority', dto.priority, 'priority');
    if (dto.max_rpm !== undefined) set('maxRpm', dto.max_rpm, 'max_rpm');
    if (dto.max_tpm !== undefined) set('maxTpm', dto.max_tpm, 'max_tpm');
    if (dto.max_concurrent !== undefined) set('maxConcurrent', dto.max_concurrent, 'max_concurrent');
    if (dto.enabled !== undefined) set('enabled', dto.enabled, 'enabled');
    let clearCooldown = false;
    if (dto.key !== undefined) {
      // A submitted value — a new one or the same one again (the account was fixed upstream) — is a
      // value the admin vouches for: `invalid` ends and the key is tried again.
      if (k.brokenAt || this.decryptValue(k) !== dto.key) {
        const sealed = this.cipher.encrypt(dto.key, providerKeyAad(k.id));
        patch.ciphertext = sealed.ciphertext;
        patch.encryptionKeyId = sealed.keyId;
        patch.masked = maskKey(dto.key);
        patch.brokenAt = null;
        changes.value_replaced = { masked_from: k.masked, masked_to: patch.masked };
      }
      if (k.invalidAt) {
        patch.invalidAt = null;
        changes.invalid = { from: true, to: false };
      }
      if (patch.ciphertext !== undefined || k.invalidAt) clearCooldown = true;
    }
    if (dto.enabled === true) {
      // The admin vouches for the key: an invalid mark and a running cooldown end now.
      if (k.invalidAt) {
        patch.invalidAt = null;
        changes.invalid = { from: true, to: false };
      }
      if (k.cooldownUntil && k.cooldownUntil.getTime() > Date.now()) changes.cooldown_cleared = true;
      if (k.cooldownUntil) patch.cooldownUntil = null;
      clearCooldown = true;
    }
    if (ctx.source === 'file' && k.source !== 'file') patch.source = 'file';
    const changed = Object.keys(changes).length > 0;
    try {
      await this.keys.updateWithAudit(k.id, patch, async (m) => {
        if (changed) {
          await this.audit.record(m, ctx.request, {
            action: 'provider_key.update',
            targetType: 'provider_key',
            targetId: k.id,
            changes: { ...changes, source: ctx.source },
          });
        }
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw labelTaken(dto.label ?? k.label);
      throw err;
    }
    if (clearCooldown) await this.pool.clearCooldown(k.providerId, k.id);
    if (Object.keys(patch).length > 0 || clearCooldown) await this.pool.invalidate(k.providerId);
    return { key: (await this.keys.byId(k.id))!, changed };
  }

  async deleteKey(id: string, ctx: WriteContext): Promise<void> {
    const k = await this.findKey(id);
    await this.keys.deleteWithAudit(k.id, (m) =>
      this.audit.record(m, ctx.request, {
        action: 'provider_key.delete',
        targetType: 'provider_key',
        targetId: k.id,
        changes: { provider_id: k.providerId, label: k.label, masked: k.masked, source: ctx.source },
      }),
    );
    await this.pool.invalidate(k.providerId);
    await this.pool.forgetKey(k.providerId, k.id).catch(() => undefined);
  }

  private async assertLabelFree(providerId: string, label: string, exceptId: string | null): Promise<void> {
    const other = await this.keys.byLabelIgnoringCase(providerId, label);
    if (other && other.id !== exceptId) throw labelTaken(label);
  }

  // ---- encryption -------------------------------------------------------------------------

  /**
   * The start-up heal, on demand (`floodgate encryption rotate`): re-encrypts every row not sealed
   * under the current encryption key, marks undecryptable rows broken, recovers broken rows whose
   * key came back. Batched and resumable like the start-up heal. Audited.
   */
  async heal(request: FastifyRequest): Promise<HealReportDto> {
    const result = await this.keys.healSealedValues(this.cipher, {
      batchSize: this.config.keyPool.healBatchSize,
      logger: this.logger,
    });
    if (result.healed + result.recovered + result.broken > 0) await this.pool.invalidate('*');
    const report: HealReportDto = {
      encryption_key_id: this.cipher.currentKeyId,
      total: result.total,
      healed: result.healed,
      recovered: result.recovered,
      broken: result.broken + result.stillBroken,
    };
    // The heal commits batch by batch (resumable by design); its audit row reports what was done.
    await this.providers.inTransaction((m) =>
      this.audit.record(m, request, {
        action: 'provider_key.heal',
        targetType: 'provider_key',
        targetId: null,
        changes: { ...report },
      }),
    );
    return report;
  }

  // ---- usage --------------------------------------------------------------------------------

  async usage(id: string, minutes: number): Promise<KeyUsageDto> {
    const k = await this.findKey(id);
    await this.pool.flushUsage();
    const end = Math.floor(Date.now() / 60_000) * 60_000;
    const start = end - (minutes - 1) * 60_000;
    const rows = await this.keys.usageMinutesSince(k.id, new Date(start));
    const byMinute = new Map(rows.map((r) => [r.minute.getTime(), r]));
    const buckets = [];
    const totals = { requests: 0, tokens: 0, rate_limited: 0, errors: 0 };
    for (let m = start; m <= end; m += 60_000) {
      const r = byMinute.get(m);
      const b = {
        minute: new Date(m).toISOString(),
        requests: r?.requests ?? 0,
        tokens: r?.tokens ?? 0,
        rate_limited: r?.rateLimited ?? 0,
        errors: r?.errors ?? 0,
      };
      totals.requests += b.requests;
      totals.tokens += b.tokens;
      totals.rate_limited += b.rate_limited;
      totals.errors += b.errors;
      buckets.push(b);
    }
    const window = (await this.safeWindows(k.providerId, [k.id])).get(k.id);
    return {
      key_id: k.id,
      minutes,
      buckets,
      totals,
      window: {
        requests: window?.requests ?? 0,
        tokens: window?.tokens ?? 0,
        in_flight: window?.inFlight ?? 0,
      },
    };
  }

  // ---- views --------------------------------------------------------------------------------

  private async safeWindows(providerId: string, keyIds: string[]): Promise<Map<string, KeyWindow>> {
    try {
      return new Map((await this.pool.windows(providerId, keyIds)).map((w) => [w.keyId, w]));
    } catch (err) {
      this.logger.warn(`live key windows unavailable: ${(err as Error).message}`);
      return new Map();
    }
  }

  /** A provider as the API answers it; header values only in clear when `revealHeaders`. */
  providerView(
    p: Provider,
    keys: Pick<ProviderKey, 'enabled' | 'brokenAt' | 'invalidAt' | 'cooldownUntil'>[],
    revealHeaders: boolean,
  ): ProviderDto {
    const counts: Record<ProviderKeyState | 'total', number> = {
      total: keys.length,
      active: 0,
      cooling: 0,
      disabled: 0,
      broken: 0,
      invalid: 0,
    };
    for (const k of keys) counts[keyState(k)]++;
    return {
      id: p.id,
      name: p.name,
      kind: p.kind ?? 'openai',
      base_url: p.baseUrl,
      models: p.models,
      rpm: p.rpm,
      burst: p.burst,
      timeout_ms: p.timeoutMs,
      enabled: p.enabled,
      headers: revealHeaders ? p.headers : redactHeaderValues(p.headers),
      headers_redacted: !revealHeaders,
      pricing: p.pricing ?? {},
      source: p.source,
      keys: counts,
      created_at: p.createdAt.toISOString(),
      updated_at: p.updatedAt.toISOString(),
    };
  }

  keyView(k: ProviderKey, window: KeyWindow | undefined): ProviderKeyDto {
    const now = Date.now();
    // The store's cooldown is authoritative while it runs (the Postgres copy is written right after).
    const cooldownMs = Math.max(k.cooldownUntil?.getTime() ?? 0, window?.cooldownUntilMs ?? 0);
    const cooldownUntil = cooldownMs > now ? new Date(cooldownMs) : null;
    return {
      id: k.id,
      provider_id: k.providerId,
      label: k.label,
      masked: k.masked,
      priority: k.priority,
      max_rpm: k.maxRpm,
      max_tpm: k.maxTpm,
      max_concurrent: k.maxConcurrent,
      enabled: k.enabled,
      state: keyState({ ...k, cooldownUntil }, now),
      cooldown_until: iso(cooldownUntil),
      last_429_at: iso(k.last429At),
      broken_at: iso(k.brokenAt),
      invalid_at: iso(k.invalidAt),
      total_requests: k.totalRequests,
      total_tokens: k.totalTokens,
      last_used_at: iso(k.lastUsedAt),
      encryption_key_id: k.encryptionKeyId,
      source: k.source,
      window: {
        requests: window?.requests ?? 0,
        tokens: window?.tokens ?? 0,
        in_flight: window?.inFlight ?? 0,
      },
      created_at: k.createdAt.toISOString(),
      updated_at: k.updatedAt.toISOString(),
    };
  }
}

function nameTaken(name: string): ApiError {
  return ApiError.conflict(`a provider named ${name} already exists`, 'name', 'provider_name_taken');
}

function labelTaken(label: string): ApiError {
  return ApiError.conflict(
    `this provider already has a key labelled ${label}`,
    'label',
    'provider_key_label_taken',
  );
}

/** A provider's `pricing`, checked and normalised (cached_input_per_mtok filled in); 400 naming the field. */
function pricingOf(raw: unknown): ProviderPricing {
  const checked = checkPricing(raw);
  if (!checked.ok) throw ApiError.badRequest(checked.message, checked.param);
  return checked.pricing;
}

/** Extra upstream headers: sane names, no CR/LF, no credentials or framing headers. */
export function checkHeaders(headers: Record<string, unknown>): Record<string, string> {
  const entries = Object.entries(headers);
  if (entries.length > MAX_HEADERS)
    throw ApiError.badRequest(
      `headers must have at most ${MAX_HEADERS} entries, got ${entries.length}`,
      'headers',
    );
  const out: Record<string, string> = {};
  const seen = new Set<string>();
  for (const [name, value] of entries) {
    const param = `headers.${name}`;
    if (!HEADER_NAME.test(name)) throw ApiError.badRequest(`${param} is not a valid header name`, param);
    const lower = name.toLowerCase();
    if (FORBIDDEN_HEADERS.has(lower) || lower.startsWith('x-floodgate-')) {
      throw ApiError.badRequest(
        `${param} may not be set on a provider (credentials go in upstream keys; framing headers are the relay's)`,
        param,
      );
    }
    if (seen.has(lower)) throw ApiError.badRequest(`${param} is given twice`, param);
    seen.add(lower);
    if (typeof value !== 'string' || value.length > 4096 || /[\r\n\0]/.test(value)) {
      throw ApiError.badRequest(
        `${param} must be a string of at most 4096 characters without line breaks`,
        param,
      );
    }
    if (isRedactedPlaceholder(value)) {
      // A preview read back (GET by a non-admin, or a copy of one): never stored over a real value.
      throw ApiError.badRequest(
        `${param} is a redacted preview (it contains "…"), not a header value: send the real value, or leave headers out to keep them`,
        param,
        'redacted_header_value',
      );
    }
    out[name] = value;
  }
  return out;
}
