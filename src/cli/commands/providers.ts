import type { Provider } from '../api-types.js';
import {
  optBool,
  optChoice,
  optInt,
  optList,
  reqString,
  type CommandContext,
  type CommandSpec,
} from '../command.js';
import { UsageError } from '../errors.js';
import type { Column } from '../output.js';
import { resolveProvider } from './shared.js';

const PROVIDER_COLUMNS: Column<Provider>[] = [
  { header: 'ID', value: 'id' },
  { header: 'NAME', value: 'name' },
  { header: 'BASE URL', value: 'base_url' },
  { header: 'MODELS', value: 'models' },
  { header: 'STATUS', value: (p: Provider) => (p.enabled ? 'enabled' : 'disabled') },
  { header: 'RPM', value: 'rpm', align: 'right' },
  { header: 'KEYS', value: (p: Provider) => keyCounts(p) },
  { header: 'SOURCE', value: 'source' },
];

/** "2/3 active (1 cooling)". */
function keyCounts(p: Provider): string {
  const k = p.keys;
  const other = (['cooling', 'disabled', 'invalid', 'broken'] as const)
    .filter((s) => k[s] > 0)
    .map((s) => `${k[s]} ${s}`);
  return `${k.active}/${k.total} active${other.length ? ` (${other.join(', ')})` : ''}`;
}

function parseHeaders(raw: string[] | undefined, command: string): Record<string, string> | undefined {
  if (raw === undefined) return undefined;
  const headers: Record<string, string> = {};
  for (const h of raw) {
    const i = h.indexOf(':');
    if (i <= 0) throw new UsageError(`--header must look like "Name: value", got "${h}"`, command);
    headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  return headers;
}

const add: CommandSpec = {
  name: 'providers add',
  summary: 'add a provider (any OpenAI-compatible base URL, or the Anthropic API)',
  usage: '--name NAME --base-url URL [--models LIST] [options]',
  description: [
    'Requests for a model go to the provider that lists it (exact ids first, then * patterns).',
    'Add upstream keys next: floodgate upstream-keys add --provider NAME --label LABEL --key-env VAR',
  ],
  options: {
    name: { type: 'string', value: 'NAME', help: 'unique; letters, digits, . _ - (required)' },
    'base-url': {
      type: 'string',
      value: 'URL',
      help: 'base URL, e.g. https://api.openai.com/v1, or https://api.anthropic.com/v1 with --kind anthropic (required)',
    },
    kind: {
      type: 'string',
      value: 'KIND',
      help: 'openai (OpenAI-compatible, the default) or anthropic (the Messages API)',
    },
    models: {
      type: 'string',
      multiple: true,
      value: 'LIST',
      help: 'model ids or * patterns it serves, comma-separated or repeated',
    },
    rpm: { type: 'string', value: 'N', help: 'provider-wide requests per minute' },
    burst: { type: 'string', value: 'N', help: 'burst above rpm' },
    'timeout-ms': { type: 'string', value: 'MS', help: 'upstream timeout, 1000-600000 (default 60000)' },
    header: {
      type: 'string',
      multiple: true,
      value: '"NAME: VALUE"',
      help: 'extra upstream header (repeatable; no credentials: those are upstream keys)',
    },
    disabled: { type: 'boolean', help: 'create it disabled' },
    quiet: { type: 'boolean', short: 'q', help: 'print only the new id (for scripts)' },
  },
  positionals: { min: 0, max: 0 },
  examples: [
    'floodgate providers add --name openai --base-url https://api.openai.com/v1 --models gpt-4o-mini,gpt-4o',
    'floodgate providers add --name anthropic --kind anthropic --base-url https://api.anthropic.com/v1 --models "claude-*"',
    'floodgate providers add --name vllm --base-url http://vllm.internal:8000/v1 --models "meta-llama/*"',
  ],
  async run(ctx) {
    const v = ctx.values;
    const body: Record<string, unknown> = {
      name: reqString(v, 'name', this.name),
      base_url: reqString(v, 'base-url', this.name),
    };
    const kind = optChoice(v, 'kind', this.name, ['openai', 'anthropic'] as const);
    if (kind !== undefined) body.kind = kind;
    const models = optList(v, 'models');
    if (models !== undefined) body.models = models;
    const rpm = optInt(v, 'rpm', this.name, { min: 1, max: 10_000_000 });
    if (rpm !== undefined) body.rpm = rpm;
    const burst = optInt(v, 'burst', this.name, { min: 1, max: 10_000_000 });
    if (burst !== undefined) body.burst = burst;
    const timeout = optInt(v, 'timeout-ms', this.name, { min: 1000, max: 600_000 });
    if (timeout !== undefined) body.timeout_ms = timeout;
    const headers = parseHeaders(v.header as string[] | undefined, this.name);
    if (headers !== undefined) body.headers = headers;
    if (optBool(v, 'disabled')) body.enabled = false;
    const provider = await ctx.client().post<Provider>('/api/admin/providers', body);
    if (ctx.json) return ctx.out.json(provider);
    if (optBool(v, 'quiet')) return ctx.out.line(provider.id);
    ctx.out.line(`Created provider ${provider.id} (${provider.name})`);
    ctx.out.record([
      ['kind', provider.kind],
      ['base URL', provider.base_url],
      ['models', provider.models.length ? provider.models.join(', ') : '(none: no model routes to it yet)'],
      ['status', provider.enabled ? 'enabled' : 'disabled'],
    ]);
  },
};

const list: CommandSpec = {
  name: 'providers list',
  summary: 'list providers with their key counts by state',
  usage: '',
  options: {},
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const providers = await ctx.client().get<Provider[]>('/api/admin/providers');
    if (ctx.json) return ctx.out.json(providers);
    ctx.out.table(PROVIDER_COLUMNS, providers, '(no providers)');
  },
};

function toggle(enabled: boolean): CommandSpec {
  const verb = enabled ? 'enable' : 'disable';
  return {
    name: `providers ${verb}`,
    summary: enabled ? 'enable a provider' : 'disable a provider (its models stop routing to it)',
    usage: 'ID|NAME',
    options: {},
    positionals: { min: 1, max: 1 },
    examples: [`floodgate providers ${verb} openai`],
    async run(ctx: CommandContext) {
      const client = ctx.client();
      const target = await resolveProvider(client, ctx.positionals[0]!);
      const provider = await client.patch<Provider>(`/api/admin/providers/${target.id}`, { enabled });
      if (ctx.json) return ctx.out.json(provider);
      ctx.out.line(`${enabled ? 'enabled' : 'disabled'} provider ${provider.name} (${provider.id})`);
    },
  };
}

export const PROVIDERS_COMMANDS = [add, list, toggle(false), toggle(true)];
