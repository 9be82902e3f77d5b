import {
  BUDGET_PERIODS,
  PRIORITIES,
  ROLES,
  type ApiKey,
  type CreatedApiKey,
  type Page,
} from '../api-types.js';
import { optBool, optChoice, optInt, optList, optString, reqString, type CommandSpec } from '../command.js';
import { UsageError } from '../errors.js';
import { shortTime, type Column } from '../output.js';
import { isUuid, limitsText, listAll, resolveUserId } from './shared.js';

const KEY_COLUMNS: Column<ApiKey>[] = [
  { header: 'ID', value: 'id' },
  { header: 'NAME', value: 'name' },
  { header: 'KEY', value: 'masked' },
  { header: 'OWNER', value: 'owner_id' },
  { header: 'ROLE', value: 'role' },
  { header: 'RPM', value: (k: ApiKey) => k.limits.rpm ?? 'default', align: 'right' },
  { header: 'TPM', value: (k: ApiKey) => k.limits.tpm ?? 'unlimited', align: 'right' },
  { header: 'MODELS', value: (k: ApiKey) => k.allowed_models ?? 'all' },
  { header: 'MAX PRIORITY', value: 'max_priority' },
  { header: 'STATUS', value: (k: ApiKey) => keyStatus(k) },
  { header: 'LAST USED', value: (k: ApiKey) => shortTime(k.last_used_at) },
];

function keyStatus(k: ApiKey): string {
  if (k.revoked_at) return 'revoked';
  if (k.expires_at && Date.parse(k.expires_at) <= Date.now()) return 'expired';
  return k.expires_at ? `expires ${shortTime(k.expires_at)}` : 'active';
}

const create: CommandSpec = {
  name: 'keys create',
  summary: 'issue a client API key (for a user, or for yourself)',
  usage: '--name NAME [--user ID|EMAIL] [options]',
  description: [
    "Creates a client key for /v1. Without --user the key belongs to you (the admin key's user:",
    'POST /api/keys); with --user it belongs to that user (POST /api/admin/users/{id}/keys).',
    'The raw key is printed once: store it now. Give a role lower than admin to keys used by apps.',
  ],
  options: {
    name: { type: 'string', value: 'NAME', help: 'a name for the key (1-100 characters, required)' },
    user: { type: 'string', value: 'ID|EMAIL', help: 'owner: a user id or email (default: yourself)' },
    role: {
      type: 'string',
      value: 'ROLE',
      help: `the key's role: ${ROLES.join(', ')} (default: the highest the owner and you have)`,
    },
    rpm: { type: 'string', value: 'N', help: 'requests per minute (default: the gateway default)' },
    tpm: { type: 'string', value: 'N', help: 'tokens per minute (default: unlimited)' },
    'allowed-models': {
      type: 'string',
      multiple: true,
      value: 'LIST',
      help: 'model ids or * patterns, comma-separated or repeated (default: all)',
    },
    'max-priority': {
      type: 'string',
      value: 'P',
      help: `highest X-Priority the key may use: ${PRIORITIES.join(', ')} (default high)`,
    },
    'expires-at': { type: 'string', value: 'ISO', help: 'expiry, ISO-8601 (default: never)' },
    quiet: { type: 'boolean', short: 'q', help: 'print only the key (for scripts)' },
  },
  positionals: { min: 0, max: 0 },
  examples: [
    'floodgate keys create --name ci --user ada@example.com --role user --rpm 60 --allowed-models gpt-4o-mini',
    'export FLOODGATE_API_KEY=$(floodgate keys create --name my-app --role user -q)',
  ],
  async run(ctx) {
    const v = ctx.values;
    const name = reqString(v, 'name', this.name);
    const rpm = optInt(v, 'rpm', this.name, { min: 1, max: 1_000_000 });
    const tpm = optInt(v, 'tpm', this.name, { min: 1, max: 1_000_000_000 });
    const expiresAt = optString(v, 'expires-at');
    if (expiresAt !== undefined && Number.isNaN(Date.parse(expiresAt))) {
      throw new UsageError(`--expires-at must be an ISO-8601 time, got "${expiresAt}"`, this.name);
    }
    const body: Record<string, unknown> = { name };
    const role = optChoice(v, 'role', this.name, ROLES);
    if (role) body.role = role;
    if (rpm !== undefined || tpm !== undefined) {
      body.limits = { ...(rpm !== undefined ? { rpm } : {}), ...(tpm !== undefined ? { tpm } : {}) };
    }
    const models = optList(v, 'allowed-models');
    if (models !== undefined) body.allowed_models = models;
    const maxPriority = optChoice(v, 'max-priority', this.name, PRIORITIES);
    if (maxPriority) body.max_priority = maxPriority;
    if (expiresAt !== undefined) body.expires_at = expiresAt;

    const client = ctx.client();
    const userRef = optString(v, 'user');
    const path =
      userRef === undefined
        ? '/api/keys'
        : `/api/admin/users/${encodeURIComponent(await resolveUserId(client, userRef))}/keys`;
    const key = await client.post<CreatedApiKey>(path, body);
    if (ctx.json) return ctx.out.json(key);
    if (optBool(v, 'quiet')) return ctx.out.line(key.key);
    ctx.out.line(`Created API key ${key.id} (${key.name})`);
    ctx.out.record([
      ['owner', key.owner_id],
      ['role', key.role],
      ['limits', limitsText(key.limits)],
      ['models', key.allowed_models?.join(', ') ?? 'all'],
      ['max priority', key.max_priority],
      ['expires', shortTime(key.expires_at) ?? 'never'],
    ]);
    ctx.out.line();
    ctx.out.line(`key: ${key.key}`);
    ctx.out.line('Store it now: it is not shown again. Use it as "Authorization: Bearer <key>" on /v1.');
  },
};

const list: CommandSpec = {
  name: 'keys list',
  summary: "list client API keys (everyone's, one user's, or yours)",
  usage: '[--user ID|EMAIL | --mine] [--include-revoked]',
  options: {
    user: { type: 'string', value: 'ID|EMAIL', help: "only this user's keys" },
    mine: { type: 'boolean', help: 'only your own keys' },
    'include-revoked': { type: 'boolean', help: 'also revoked keys' },
  },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const v = ctx.values;
    const includeRevoked = optBool(v, 'include-revoked') || undefined;
    const userRef = optString(v, 'user');
    if (userRef !== undefined && optBool(v, 'mine')) {
      throw new UsageError('give --user or --mine, not both', this.name);
    }
    const client = ctx.client();
    let keys: ApiKey[];
    if (optBool(v, 'mine')) {
      keys = (await client.get<Page<ApiKey>>('/api/keys', { include_revoked: includeRevoked })).data;
    } else {
      const userId = userRef === undefined ? undefined : await resolveUserId(client, userRef);
      keys = await listAll<ApiKey>(client, '/api/admin/api-keys', {
        user_id: userId,
        include_revoked: includeRevoked,
      });
    }
    if (ctx.json) return ctx.out.json(keys);
    ctx.out.table(KEY_COLUMNS, keys, '(no keys)');
  },
};

const revoke: CommandSpec = {
  name: 'keys revoke',
  summary: 'revoke client API keys (effective on every instance within a second)',
  usage: 'ID [ID...]',
  description: ['Idempotent: revoking a revoked key succeeds. Stops at the first key that fails.'],
  options: {},
  positionals: { min: 1, max: 100 },
  examples: ['floodgate keys revoke 0b6f4a52-2d55-4c2e-9d43-8f1f2f0c9a11'],
  async run(ctx) {
    for (const id of ctx.positionals) {
      if (!isUuid(id))
        throw new UsageError(`"${id}" is not a key id (a uuid; see floodgate keys list)`, this.name);
    }
    const client = ctx.client();
    const revoked: string[] = [];
    for (const id of ctx.positionals) {
      await client.delete(`/api/admin/api-keys/${id}`);
      revoked.push(id);
      if (!ctx.json) ctx.out.line(`revoked ${id}`);
    }
    if (ctx.json) ctx.out.json({ revoked });
  },
};

const USD = /^(?:\d+(?:\.\d{1,6})?|\.\d{1,6})$/;

const update: CommandSpec = {
  name: 'keys update',
  summary: "change a client key's name, limits, budget or models (every instance, at once)",
  usage:
    'ID [--name NAME] [--rpm N|none] [--tpm N|none] [--budget-usd USD --budget-period P | --no-budget] [--allowed-models LIST | --all-models]',
  description: [
    'PATCH /api/admin/api-keys/{id}: only the options given change, the rest is kept. The value,',
    'owner and role of a key never change (for another role, create a new key). "none" clears a',
    'limit (rpm: back to the gateway default; tpm: unlimited). Refused for a revoked key.',
  ],
  options: {
    name: { type: 'string', value: 'NAME', help: 'a new name (1-100 characters)' },
    rpm: { type: 'string', value: 'N|none', help: 'requests per minute; none = the gateway default' },
    tpm: { type: 'string', value: 'N|none', help: 'tokens per minute; none = unlimited' },
    'budget-usd': {
      type: 'string',
      value: 'USD',
      help: 'spend budget in USD per period (at most 6 decimals; with --budget-period)',
    },
    'budget-period': {
      type: 'string',
      value: 'P',
      help: `the budget's period: ${BUDGET_PERIODS.join(', ')} (with --budget-usd)`,
    },
    'no-budget': { type: 'boolean', help: 'remove the budget' },
    'allowed-models': {
      type: 'string',
      multiple: true,
      value: 'LIST',
      help: 'model ids or * patterns, comma-separated or repeated (replaces the list)',
    },
    'all-models': { type: 'boolean', help: 'allow every model (clears the list)' },
  },
  positionals: { min: 1, max: 1 },
  examples: [
    'floodgate keys update 0b6f4a52-2d55-4c2e-9d43-8f1f2f0c9a11 --rpm 30 --budget-usd 10 --budget-period day',
    'floodgate keys update 0b6f4a52-2d55-4c2e-9d43-8f1f2f0c9a11 --tpm none --no-budget --all-models',
  ],
  async run(ctx) {
    const v = ctx.values;
    const id = ctx.positionals[0]!;
    if (!isUuid(id))
      throw new UsageError(`"${id}" is not a key id (a uuid; see floodgate keys list)`, this.name);
    const body: Record<string, unknown> = {};
    const name = optString(v, 'name');
    if (name !== undefined) {
      if (name.length === 0) throw new UsageError('--name must not be empty', this.name);
      body.name = name;
    }
    const rpm = optInt(v, 'rpm', this.name, { min: 1, max: 1_000_000, allowNone: true });
    const tpm = optInt(v, 'tpm', this.name, { min: 1, max: 1_000_000_000, allowNone: true });
    if (rpm !== undefined || tpm !== undefined) {
      body.limits = { ...(rpm !== undefined ? { rpm } : {}), ...(tpm !== undefined ? { tpm } : {}) };
    }
    const usd = optString(v, 'budget-usd');
    const period = optChoice(v, 'budget-period', this.name, BUDGET_PERIODS);
    if (optBool(v, 'no-budget')) {
      if (usd !== undefined || period !== undefined) {
        throw new UsageError('give --budget-usd/--budget-period or --no-budget, not both', this.name);
      }
      body.budget = null;
    } else if (usd !== undefined || period !== undefined) {
      if (usd === undefined || period === undefined) {
        throw new UsageError('--budget-usd and --budget-period go together', this.name);
      }
      if (!USD.test(usd) || Number(usd) <= 0 || Number(usd) > 1_000_000_000) {
        throw new UsageError(
          `--budget-usd must be a positive amount up to 1000000000 with at most 6 decimals, got "${usd}"`,
          this.name,
        );
      }
      body.budget = { limit_usd: Number(usd), period };
    }
    const models = optList(v, 'allowed-models');
    if (models !== undefined && optBool(v, 'all-models')) {
      throw new UsageError('give --allowed-models or --all-models, not both', this.name);
    }
    if (models !== undefined) {
      if (models.length === 0) throw new UsageError('--allowed-models needs at least one model', this.name);
      body.allowed_models = models;
    }
    if (optBool(v, 'all-models')) body.allowed_models = null;
    if (Object.keys(body).length === 0) {
      throw new UsageError(
        'nothing to change: give --name, --rpm, --tpm, --budget-usd/--budget-period, --no-budget, --allowed-models or --all-models',
        this.name,
      );
    }

    const key = await ctx.client().patch<ApiKey>(`/api/admin/api-keys/${id}`, body);
    if (ctx.json) return ctx.out.json(key);
    ctx.out.line(`Updated API key ${key.id} (${key.name})`);
    ctx.out.record([
      ['limits', limitsText(key.limits)],
      [
        'budget',
        key.budget
          ? `${key.budget.limit_usd} USD ${key.budget.period === 'total' ? 'in total' : `per ${key.budget.period}`}`
          : 'none',
      ],
      ['models', key.allowed_models?.join(', ') ?? 'all'],
    ]);
  },
};

export const KEYS_COMMANDS = [create, list, update, revoke];
