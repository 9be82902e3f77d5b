import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { readFile } from 'node:fs/promises';
import { ApiError } from '../../common/api-error.js';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import type { CreateRouteDto } from '../dto/route.dto.js';
import { aliasProblem } from '../domain/route-rules.js';
import { RouteRepository } from '../infrastructure/route.repository.js';
import { parseRoutesSection, RoutesFileError, type FileRoute } from '../infrastructure/routes-file.js';
import { RoutesService, type RouteWriteContext } from './routes.service.js';

const FILE_LOCK = 'floodgate:providers-file:routes';

export interface RoutesFileResult {
  created: number;
  updated: number;
  deleted: number;
}

/**
 * Applies PROVIDERS_FILE's `routes:` at start-up, after the key pool has applied its `providers:`
 * (onApplicationBootstrap runs once every module's onModuleInit is done, KeyPoolBootstrap's
 * included). Mirrors the providers' semantics: upsert by the natural key (`model`), routes the file
 * made and no longer lists are removed, API-made routes are left alone (one the file names is taken
 * over), every problem is reported at once and stops the start.
 */
@Injectable()
export class RoutesBootstrap implements OnApplicationBootstrap {
  private readonly logger = new Logger('Routes');

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly routes: RoutesService,
    private readonly repository: RouteRepository,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    if (this.config.keyPool.providersFile) await this.applyFile(this.config.keyPool.providersFile);
  }

  async applyFile(path: string): Promise<RoutesFileResult> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new RoutesFileError(path, [
        `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      ]);
    }
    const file = parseRoutesSection(path, text);
    return this.repository.underSessionLock(FILE_LOCK, async () => {
      const result = await this.apply(path, file);
      this.logger.log(
        result.created + result.updated + result.deleted > 0
          ? `PROVIDERS_FILE routes applied: ${result.created} created, ${result.updated} updated, ${result.deleted} removed`
          : `PROVIDERS_FILE routes applied: ${file.length} route(s), nothing changed`,
      );
      return result;
    });
  }

  private async apply(path: string, file: FileRoute[]): Promise<RoutesFileResult> {
    const r: RoutesFileResult = { created: 0, updated: 0, deleted: 0 };
    const ctx: RouteWriteContext = { request: null, source: 'file' };
    // Provider names → ids (case-insensitively, as provider names are unique), every problem at once.
    const byName = new Map<string, string>();
    for (const [id, name] of await this.routes.providerNames()) byName.set(name.toLowerCase(), id);
    const problems: string[] = [];
    const dtos: { dto: CreateRouteDto; at: string }[] = [];
    for (const { dto, at } of file) {
      const alias = aliasProblem(dto.model, `${at}.model`);
      if (alias) problems.push(`${alias.path}: ${alias.message.replace(`${alias.path} `, '')}`);
      const targets = dto.targets.map((t, j) => {
        const id = byName.get(t.provider.toLowerCase());
        if (!id)
          problems.push(`${at}.targets[${j}].provider: unknown provider ${JSON.stringify(t.provider)}`);
        const { provider: _name, ...rest } = t;
        return { ...rest, provider_id: id ?? '' };
      });
      dtos.push({ at, dto: { ...dto, targets } });
    }
    if (problems.length > 0) throw new RoutesFileError(path, problems);

    const declared = new Set<string>();
    for (const { dto, at } of dtos) {
      try {
        const existing = await this.routes.byModel(dto.model);
        if (!existing) {
          declared.add((await this.routes.create(dto, ctx)).id);
          r.created++;
          continue;
        }
        declared.add(existing.id);
        const { changed } = await this.routes.update(
          existing.id,
          {
            targets: dto.targets,
            max_attempts: dto.max_attempts ?? 3,
            enabled: dto.enabled ?? true,
          },
          ctx,
        );
        if (changed) r.updated++;
      } catch (err) {
        if (err instanceof ApiError)
          throw new RoutesFileError(path, [`${at}${err.param ? `.${err.param}` : ''}: ${err.message}`]);
        throw err;
      }
    }
    for (const id of await this.routes.fileRouteIds()) {
      if (!declared.has(id)) {
        await this.routes.remove(id, ctx);
        r.deleted++;
      }
    }
    return r;
  }
}
