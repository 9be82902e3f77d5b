import type { Provider, ProviderKey } from '../api-types.js';
import { optBool, optInt, optString, reqString, type CommandContext, type CommandSpec } from '../command.js';
import { UsageError } from '../errors.js';
import { shortTime, type Column } from '../output.js';
import { readSecret } from '../secret-input.js';
import { isUuid, resolveProvider } from './shared.js';

type Row = ProviderKey & { provider_name: string };

const KEY_COLUMNS: Column<Row>[] = [
  { header: 'ID', value: 'id' },
  { header: 'PROVIDER', value: 'provider_name' },
  { header: 'LABEL', value: 'label' },
  { header: 'KEY', value: 'masked' },
  { header: 'STATE', value: (k: Row) => stateText(k) },
  { header: 'PRIORITY', value: 'priority', align: 'right' },
  { header: 'MAX RPM', value: 'max_rpm', align: 'right' },
  { header: 'MAX TPM', value: 'max_tpm', align: 'right' },
  { header: 'CONCURRENCY', value: (k: Row) => k.max_concurrent ?? 'adaptive' },
  { header: 'IN FLIGHT', value: (k: Row) => k.window.in_flight, align: 'right' },
  { header: 'REQUESTS', value: 'total_requests', align: 'right' },
  { header: 'ENC KEY', value: 'encryption_key_id' },
  { header: 'LAST USED', value: (k: Row) => shortTime(k.last_used_at) },
];

function stateText(k: ProviderKey): string {
  return k.state === 'cooling' && k.cooldown_until ? `cooling until ${shortTime(k.cooldown_until)}` : k.state;
}

const add: CommandSpec = {
  name: 'upstream-keys add',
  summary: "add an upstream key (your provider's API key; stored encrypted)",
  usage: '--provider ID|NAME --label LABEL [--key-env VAR | < file] [options]',
  description: [
    'The key value is read from the environment variable named by --key-env, or from stdin (piped,',
    'or typed at a hidden prompt). --key VALUE works too but leaves the secret in your shell history',
    'and the process list.',
  ],
  options: {
    provider: { type: 'string', value: 'ID|NAME', help: 'the provider (required)' },
    label: { type: 'string', value: 'LABEL', help: 'unique per provider, 1-128 characters (required)' },
    'key-env': { type: 'string', value: 'VAR', help: 'read the key value from this environment variable' },
    key: { type: 'string', value: 'VALUE', help: 'the key value itself (discouraged: shell history)' },
    priority: { type: 'string', value: 'N', help: 'lower is tried first, 0-1000 (default 1)' },
    'max-rpm': { type: 'string', value: 'N', help: 'requests per sliding minute (default: unlimited)' },
    'max-tpm': { type: 'string', value: 'N', help: 'tokens per sliding minute (default: unlimited)' },
    'max-concurrent': {
      type: 'string',
      value: 'N',
      help: 'fixed concurrency limit (default: adaptive, learned from 429s)',
    },
    disabled: { type: 'boolean', help: 'add it disabled' },
    quiet: { type: 'boolean', short: 'q', help: 'print only the new id (for scripts)' },
  },
  positionals: { min: 0, max: 0 },
  examples: [
    'OPENAI_KEY=sk-... floodgate upstream-keys add --provider openai --label primary --key-env OPENAI_KEY',
    'floodgate upstream-keys add --provider openai --label backup --priority 2 < /run/secrets/openai-backup',
  ],
  async run(ctx) {
    const v = ctx.values;
    const providerRef = reqString(v, 'provider', this.name);
    const body: Record<string, unknown> = { label: reqString(v, 'label', this.name) };
    const priority = optInt(v, 'priority', this.name, { min: 0, max: 1000 });
    if (priority !== undefined) body.priority = priority;
    const maxRpm = optInt(v, 'max-rpm', this.name, { min: 1, max: 10_000_000 });
    if (maxRpm !== undefined) body.max_rpm = maxRpm;
    const maxTpm = optInt(v, 'max-tpm', this.name, { min: 1, max: 2_000_000_000 });
    if (maxTpm !== undefined) body.max_tpm = maxTpm;
    const maxConcurrent = optInt(v, 'max-concurrent', this.name, { min: 1, max: 10_000 });
    if (maxConcurrent !== undefined) body.max_concurrent = maxConcurrent;
    if (optBool(v, 'disabled')) body.enabled = false;
    const sources = {
      envName: optString(v, 'key-env'),
      flagValue: optString(v, 'key'),
      env: ctx.env,
      stdin: ctx.stdin,
      out: ctx.out,
      command: this.name,
    };
    // Usage problems first; a hidden prompt only once the provider is known to exist.
    const prompting = sources.envName === undefined && sources.flagValue === undefined && ctx.stdin.isTTY;
    if (!prompting) body.key = await readSecret(sources);
    const client = ctx.client();
    const provider = await resolveProvider(client, providerRef);
    if (prompting) body.key = await readSecret(sources);
    const key = await client.post<ProviderKey>(`/api/admin/providers/${provider.id}/keys`, body);
    if (ctx.json) return ctx.out.json(key);
    if (optBool(v, 'quiet')) return ctx.out.line(key.id);
    ctx.out.line(`Added upstream key ${key.id} (${key.label}) to provider ${provider.name}`);
    ctx.out.record([
      ['key', key.masked],
      ['state', key.state],
      ['priority', key.priority],
      ['concurrency', key.max_concurrent ?? 'adaptive'],
      ['encryption key', key.encryption_key_id],
    ]);
  },
};

const list: CommandSpec = {
  name: 'upstream-keys list',
  summary: "list upstream keys (one provider's, or every provider's)",
  usage: '[--provider ID|NAME]',
  options: {
    provider: { type: 'string', value: 'ID|NAME', help: "only this provider's keys" },
  },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const client = ctx.client();
    const ref = optString(ctx.values, 'provider');
    const providers: Provider[] =
      ref === undefined
        ? await client.get<Provider[]>('/api/admin/providers')
        : [await resolveProvider(client, ref)];
    const rows: Row[] = [];
    for (const p of providers) {
      const keys = await client.get<ProviderKey[]>(`/api/admin/providers/${p.id}/keys`);
      rows.push(...keys.map((k) => ({ ...k, provider_name: p.name })));
    }
    if (ctx.json) return ctx.out.json(rows);
    ctx.out.table(KEY_COLUMNS, rows, '(no upstream keys)');
  },
};

function toggle(enabled: boolean): CommandSpec {
  const verb = enabled ? 'enable' : 'disable';
  return {
    name: `upstream-keys ${verb}`,
    summary: enabled
      ? 'enable an upstream key (also ends a cooldown and clears "invalid")'
      : 'disable an upstream key (it leaves the rotation on every instance)',
    usage: 'ID',
    options: {},
    positionals: { min: 1, max: 1 },
    examples: [`floodgate upstream-keys ${verb} 5d0f3c7e-7b1a-4f3e-9a51-2b8f1c0e6d42`],
    async run(ctx: CommandContext) {
      const id = ctx.positionals[0]!;
      if (!isUuid(id)) {
        throw new UsageError(
          `"${id}" is not an upstream key id (see floodgate upstream-keys list)`,
          this.name,
        );
      }
      const key = await ctx.client().patch<ProviderKey>(`/api/admin/provider-keys/${id}`, { enabled });
      if (ctx.json) return ctx.out.json(key);
      ctx.out.line(`${verb}d upstream key ${key.label} (${key.id}): state ${key.state}`);
    },
  };
}

export const UPSTREAM_KEYS_COMMANDS = [add, list, toggle(false), toggle(true)];
