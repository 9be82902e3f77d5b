import { plainToInstance } from 'class-transformer';
import { validateSync, type ValidationError } from 'class-validator';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { CreateProviderKeyDto } from '../dto/provider-key.dto.js';
import { CreateProviderDto } from '../dto/provider.dto.js';
import { checkPricing } from '../domain/pricing.js';

/**
 * PROVIDERS_FILE: a YAML (or JSON, which is YAML) document
 *
 *   providers:
 *     - name: openai
 *       base_url: https://api.openai.com/v1
 *       models: [gpt-4o-mini, "text-embedding-*"]
 *       keys:
 *         - label: primary
 *           key: env:OPENAI_KEY_1        # or file:/run/secrets/openai-1
 *           priority: 1
 *           max_rpm: 500
 *       pricing:                         # optional, USD per million tokens (docs/spend.md)
 *         gpt-4o-mini: {input_per_mtok: 0.15, output_per_mtok: 0.6, cached_input_per_mtok: 0.075}
 *     - name: anthropic
 *       kind: anthropic                  # openai (the default) | anthropic (the Messages API)
 *       base_url: https://api.anthropic.com/v1
 *       models: ["claude-*"]
 *       keys:
 *         - label: primary
 *           key: env:ANTHROPIC_KEY_1
 *
 * Providers take the admin API's fields; keys too, except that `key` must reference a secret
 * (`env:NAME` or `file:/path`) — a literal key in a file that ends up in git is refused.
 */
export interface FileKey {
  dto: CreateProviderKeyDto;
  /** Where the value came from, for messages ("env:OPENAI_KEY_1"). */
  ref: string;
}

export interface FileProvider {
  dto: CreateProviderDto;
  keys: FileKey[];
}

export class ProvidersFileError extends Error {
  constructor(
    readonly path: string,
    readonly problems: string[],
  ) {
    super(`PROVIDERS_FILE ${path} is invalid:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ProvidersFileError';
  }
}

function flatten(errors: ValidationError[], parent: string): string[] {
  const out: string[] = [];
  for (const e of errors) {
    const path = `${parent}.${e.property}`;
    for (const text of Object.values(e.constraints ?? {})) out.push(`${path}: ${text}`);
    if (e.children?.length) out.push(...flatten(e.children, path));
  }
  return out;
}

function validateAs<T extends object>(
  cls: new () => T,
  value: unknown,
  at: string,
  problems: string[],
): T | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    problems.push(`${at} must be a mapping`);
    return null;
  }
  const instance = plainToInstance(cls, value);
  const errors = validateSync(instance, { whitelist: true, forbidNonWhitelisted: true });
  if (errors.length > 0) {
    problems.push(...flatten(errors, at));
    return null;
  }
  return instance;
}

function resolveSecret(
  ref: unknown,
  env: Record<string, string | undefined>,
  at: string,
  problems: string[],
): string | null {
  if (typeof ref !== 'string') {
    problems.push(`${at} must be a string env:NAME or file:/path`);
    return null;
  }
  if (ref.startsWith('env:')) {
    const name = ref.slice(4);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      problems.push(`${at} must name an environment variable (env:NAME), got ${JSON.stringify(ref)}`);
      return null;
    }
    const value = env[name]?.trim();
    if (!value) {
      problems.push(`${at} references ${ref}, which is not set`);
      return null;
    }
    return value;
  }
  if (ref.startsWith('file:')) {
    try {
      const value = readFileSync(ref.slice(5), 'utf8').trim();
      if (!value) throw new Error('empty');
      return value;
    } catch {
      problems.push(`${at} references ${ref}, which cannot be read or is empty`);
      return null;
    }
  }
  problems.push(`${at} must reference a secret as env:NAME or file:/path, not hold the key itself`);
  return null;
}

/** Parses and validates the whole file; every problem is reported at once. */
export function parseProvidersFile(
  path: string,
  text: string,
  env: Record<string, string | undefined>,
): FileProvider[] {
  const problems: string[] = [];
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ProvidersFileError(path, [`not valid YAML/JSON: ${(err as Error).message.split('\n')[0]}`]);
  }
  const root = doc as { providers?: unknown } | null;
  if (typeof root !== 'object' || root === null || !Array.isArray(root.providers)) {
    throw new ProvidersFileError(path, ['the document must be a mapping with a `providers` list']);
  }
  // `routes:` belongs to routing (src/routing/infrastructure/routes-file.ts), applied after the providers.
  const extra = Object.keys(root).filter((k) => k !== 'providers' && k !== 'routes');
  if (extra.length > 0) problems.push(`unknown top-level field(s): ${extra.join(', ')}`);
  const out: FileProvider[] = [];
  const names = new Set<string>();
  root.providers.forEach((raw: unknown, i: number) => {
    const at = `providers[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      problems.push(`${at} must be a mapping`);
      return;
    }
    const { keys: rawKeys, ...fields } = raw as Record<string, unknown>;
    const dto = validateAs(CreateProviderDto, fields, at, problems);
    if (dto) {
      const lower = dto.name.toLowerCase();
      if (names.has(lower)) problems.push(`${at}.name: ${dto.name} appears twice`);
      names.add(lower);
      if (dto.pricing !== undefined) {
        const priced = checkPricing(dto.pricing);
        if (!priced.ok) problems.push(`${at}.${priced.message}`);
      }
    }
    const keys: FileKey[] = [];
    if (rawKeys !== undefined && !Array.isArray(rawKeys)) problems.push(`${at}.keys must be a list`);
    const labels = new Set<string>();
    ((Array.isArray(rawKeys) ? rawKeys : []) as unknown[]).forEach((rk, j) => {
      const kat = `${at}.keys[${j}]`;
      if (typeof rk !== 'object' || rk === null || Array.isArray(rk)) {
        problems.push(`${kat} must be a mapping`);
        return;
      }
      const { key: ref, ...kfields } = rk as Record<string, unknown>;
      const value = resolveSecret(ref, env, `${kat}.key`, problems);
      if (value === null) return;
      const kdto = validateAs(CreateProviderKeyDto, { ...kfields, key: value }, kat, problems);
      if (!kdto) return;
      const lower = kdto.label.toLowerCase();
      if (labels.has(lower)) problems.push(`${kat}.label: ${kdto.label} appears twice`);
      labels.add(lower);
      keys.push({ dto: kdto, ref: String(ref) });
    });
    if (dto) out.push({ dto, keys });
  });
  // Messages never contain a secret: validation of `key` reports the pattern, not the value.
  if (problems.length > 0)
    throw new ProvidersFileError(
      path,
      problems.map((p) => p.replace(/got ".*"$/, 'got a value that is not')),
    );
  return out;
}
