import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { readFile } from 'node:fs/promises';
import { ApiError } from '../../common/api-error.js';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import { KeyCipher } from '../domain/key-cipher.js';
import type { HealResult } from '../infrastructure/key-heal.js';
import { ProviderKeyRepository } from '../infrastructure/provider-key.repository.js';
import { ProviderRepository } from '../infrastructure/provider.repository.js';
import { KeyPoolAdminService, type WriteContext } from './key-pool-admin.service.js';
import { KeyPoolService } from './key-pool.service.js';
import {
  parseProvidersFile,
  ProvidersFileError,
  type FileProvider,
} from '../infrastructure/providers-file.js';

const FILE_LOCK = 'floodgate:providers-file';

export interface FileApplyResult {
  providersCreated: number;
  providersUpdated: number;
  providersDeleted: number;
  keysCreated: number;
  keysUpdated: number;
  keysDeleted: number;
}

/**
 * Start-up work, in order, before the server listens: heal the key ciphertexts onto the current
 * encryption key, then apply PROVIDERS_FILE (idempotent; under an advisory lock so replicas
 * starting together apply it once each, one after the other).
 */
@Injectable()
export class KeyPoolBootstrap implements OnModuleInit {
  private readonly logger = new Logger('KeyPool');

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly providers: ProviderRepository,
    private readonly keys: ProviderKeyRepository,
    private readonly cipher: KeyCipher,
    private readonly admin: KeyPoolAdminService,
    private readonly pool: KeyPoolService,
  ) {}

  async onModuleInit(): Promise<void> {
    // Before anything decrypts: material that disagrees with the other replicas' stops the start (exit 2).
    await this.keys.announceEncryptionKeys(this.cipher);
    await this.heal();
    if (this.config.keyPool.providersFile) await this.applyFile(this.config.keyPool.providersFile);
  }

  /** Never fails start-up: a row that cannot be healed is marked broken; a database hiccup is logged. */
  async heal(maxBatches?: number): Promise<HealResult | null> {
    try {
      const result = await this.keys.healSealedValues(this.cipher, {
        batchSize: this.config.keyPool.healBatchSize,
        maxBatches,
        logger: this.logger,
      });
      if (result.broken > 0 || result.stillBroken > 0) {
        this.logger.warn(
          `${result.broken + result.stillBroken} upstream key(s) are broken (see the admin API: state "broken")`,
        );
      }
      if (result.healed + result.recovered + result.broken > 0) await this.pool.invalidate('*');
      return result;
    } catch (err) {
      this.logger.error(
        { err },
        'healing upstream keys failed; will retry at the next start (keys under older encryption keys still work)',
      );
      return null;
    }
  }

  async applyFile(path: string): Promise<FileApplyResult> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new ProvidersFileError(path, [
        `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      ]);
    }
    const providers = parseProvidersFile(path, text, process.env);
    return this.providers.underSessionLock(FILE_LOCK, async () => {
      const result = await this.apply(path, providers);
      const changed = Object.values(result).some((n) => n > 0);
      this.logger.log(
        changed
          ? `PROVIDERS_FILE applied: providers ${result.providersCreated} created, ${result.providersUpdated} updated, ${result.providersDeleted} removed; keys ${result.keysCreated} created, ${result.keysUpdated} updated, ${result.keysDeleted} removed`
          : `PROVIDERS_FILE applied: ${providers.length} provider(s), nothing changed`,
      );
      return result;
    });
  }

  private async apply(path: string, file: FileProvider[]): Promise<FileApplyResult> {
    const r: FileApplyResult = {
      providersCreated: 0,
      providersUpdated: 0,
      providersDeleted: 0,
      keysCreated: 0,
      keysUpdated: 0,
      keysDeleted: 0,
    };
    const ctx: WriteContext = { request: null, source: 'file', resolve: null };
    const declared = new Set<string>();
    try {
      for (const fp of file) {
        let provider = await this.admin.findProviderByName(fp.dto.name);
        if (!provider) {
          provider = await this.admin.createProvider(fp.dto, ctx);
          r.providersCreated++;
        } else {
          const { changed } = await this.admin.updateProvider(
            provider.id,
            {
              name: fp.dto.name,
              kind: fp.dto.kind ?? 'openai',
              base_url: fp.dto.base_url,
              models: fp.dto.models ?? [],
              rpm: fp.dto.rpm ?? null,
              burst: fp.dto.burst ?? null,
              timeout_ms: fp.dto.timeout_ms ?? 60000,
              enabled: fp.dto.enabled ?? true,
              headers: fp.dto.headers ?? {},
              pricing: fp.dto.pricing ?? {},
            },
            ctx,
          );
          if (changed) r.providersUpdated++;
        }
        declared.add(provider.id);
        const existing = await this.admin.keysOf(provider.id);
        const labels = new Set<string>();
        for (const fk of fp.keys) {
          labels.add(fk.dto.label.toLowerCase());
          const current = existing.find((k) => k.label.toLowerCase() === fk.dto.label.toLowerCase());
          if (!current) {
            await this.admin.createKey(provider.id, fk.dto, ctx);
            r.keysCreated++;
            continue;
          }
          const enabled = fk.dto.enabled ?? true;
          const { changed } = await this.admin.updateKey(
            current.id,
            {
              label: fk.dto.label,
              // The value only when it changed: re-stating it at every start is not an admin
              // re-submitting it (which would end an `invalid` mark).
              ...(current.brokenAt || this.admin.decryptValue(current) !== fk.dto.key
                ? { key: fk.dto.key }
                : {}),
              priority: fk.dto.priority ?? 1,
              max_rpm: fk.dto.max_rpm ?? null,
              max_tpm: fk.dto.max_tpm ?? null,
              max_concurrent: fk.dto.max_concurrent ?? null,
              // Only a change of `enabled` is applied: re-stating `true` must not end a running cooldown.
              ...(enabled !== current.enabled ? { enabled } : {}),
            },
            ctx,
          );
          if (changed) r.keysUpdated++;
        }
        for (const k of existing) {
          if (k.source === 'file' && !labels.has(k.label.toLowerCase())) {
            await this.admin.deleteKey(k.id, ctx);
            r.keysDeleted++;
          }
        }
      }
      for (const id of await this.providers.fileProviderIds()) {
        if (!declared.has(id)) {
          await this.admin.deleteProvider(id, ctx);
          r.providersDeleted++;
        }
      }
    } catch (err) {
      if (err instanceof ApiError)
        throw new ProvidersFileError(path, [`${err.param ? `${err.param}: ` : ''}${err.message}`]);
      throw err;
    }
    return r;
  }
}
