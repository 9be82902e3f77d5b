import { ApiProperty, OmitType } from '@nestjs/swagger';
import { plainToInstance, Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsString,
  MaxLength,
  MinLength,
  ValidateNested,
  validateSync,
  type ValidationError,
} from 'class-validator';
import { parse as parseYaml } from 'yaml';
import { ROUTE_LIMITS as L } from '../domain/route-rules.js';
import { CreateRouteDto, RouteTargetInputDto } from '../dto/route.dto.js';

/**
 * PROVIDERS_FILE's `routes:` section (the key pool reads `providers:` from the same file):
 *
 *   routes:
 *     - model: chat-default
 *       max_attempts: 3
 *       targets:
 *         - provider: openai          # a provider's name: in this file or made through the API
 *           model: gpt-4o-mini
 *           weight: 3
 *         - provider: groq
 *           model: llama-3.1-8b-instant
 *           tier: 2
 *           timeouts: { first_byte_ms: 5000 }
 *
 * Fields as in the admin API, except that a target names its provider by `provider` (name) instead
 * of `provider_id`.
 */
export class FileRouteTargetDto extends OmitType(RouteTargetInputDto, ['provider_id'] as const) {
  @ApiProperty({ example: 'openai' })
  @IsString()
  @MinLength(1)
  @MaxLength(64)
  provider: string;
}

export class FileRouteDto extends OmitType(CreateRouteDto, ['targets'] as const) {
  @IsArray()
  @ArrayMinSize(L.targetsMin)
  @ArrayMaxSize(L.targetsMax)
  @ValidateNested({ each: true })
  @Type(() => FileRouteTargetDto)
  targets: FileRouteTargetDto[];
}

export class RoutesFileError extends Error {
  constructor(
    readonly path: string,
    readonly problems: string[],
  ) {
    super(`PROVIDERS_FILE ${path} is invalid:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'RoutesFileError';
  }
}

/** A route of the file, validated; `targets[i].provider` still a name (resolved when applied). */
export interface FileRoute {
  dto: FileRouteDto;
  /** `routes[i]`, for messages. */
  at: string;
}

function flatten(errors: ValidationError[], parent: string): string[] {
  const out: string[] = [];
  for (const e of errors) {
    const path = /^\d+$/.test(e.property) ? `${parent}[${e.property}]` : `${parent}.${e.property}`;
    for (const text of Object.values(e.constraints ?? {})) {
      out.push(`${path}: ${text.replace(/^property /, '')}`);
    }
    if (e.children?.length) out.push(...flatten(e.children, path));
  }
  return out;
}

/**
 * The `routes` section of PROVIDERS_FILE's text, validated field by field (every problem at once,
 * each naming its path like `routes[0].targets[1].weight`). No `routes` key: an empty list.
 * Alias rules, duplicates and provider names are checked when the routes are applied.
 */
export function parseRoutesSection(path: string, text: string): FileRoute[] {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new RoutesFileError(path, [`not valid YAML/JSON: ${(err as Error).message.split('\n')[0]}`]);
  }
  const raw = (doc as { routes?: unknown } | null)?.routes;
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new RoutesFileError(path, ['routes must be a list']);
  const problems: string[] = [];
  const out: FileRoute[] = [];
  const models = new Map<string, number>();
  raw.forEach((r: unknown, i: number) => {
    const at = `routes[${i}]`;
    if (typeof r !== 'object' || r === null || Array.isArray(r)) {
      problems.push(`${at} must be a mapping`);
      return;
    }
    const model = (r as { model?: unknown }).model;
    if (typeof model === 'string') {
      const first = models.get(model);
      if (first !== undefined) problems.push(`${at}.model: ${model} appears twice (routes[${first}])`);
      else models.set(model, i);
    }
    const dto = plainToInstance(FileRouteDto, r);
    const errors = validateSync(dto, { whitelist: true, forbidNonWhitelisted: true });
    if (errors.length > 0) {
      problems.push(...flatten(errors, at));
      return;
    }
    out.push({ dto, at });
  });
  if (problems.length > 0) throw new RoutesFileError(path, problems);
  return out;
}
