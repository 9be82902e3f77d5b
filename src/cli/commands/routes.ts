import type { Provider, Route } from '../api-types.js';
import type { AdminClient } from '../client.js';
import { optBool, optInt, reqString, type CommandSpec } from '../command.js';
import { CommandError, UsageError } from '../errors.js';
import type { Column } from '../output.js';
import { isUuid } from './shared.js';

/** "alpha/gpt-4o-mini×3 beta/llama (tier 2)": every target, tier 1 first. */
function targetsText(r: Route): string {
  return [...r.targets]
    .sort((a, b) => a.tier - b.tier)
    .map(
      (t) =>
        `${t.provider ?? '(deleted)'}/${t.model}${t.weight !== 1 ? `×${t.weight}` : ''}${t.tier !== 1 ? ` (tier ${t.tier})` : ''}${t.breaker !== 'auto' ? ` [breaker ${t.breaker}]` : ''}`,
    )
    .join(', ');
}

const ROUTE_COLUMNS: Column<Route>[] = [
  { header: 'ID', value: 'id' },
  { header: 'MODEL', value: 'model' },
  { header: 'TARGETS', value: targetsText },
  { header: 'ATTEMPTS', value: 'max_attempts', align: 'right' },
  { header: 'STATUS', value: (r: Route) => (r.enabled ? 'enabled' : 'disabled') },
  { header: 'SOURCE', value: 'source' },
];

interface TargetInput {
  provider_id: string;
  model: string;
  weight?: number;
  tier?: number;
}

/** `PROVIDER/MODEL[,weight=N][,tier=N]` (the provider by name or id; the model may contain `/`). */
function parseTarget(
  raw: string,
  command: string,
): { provider: string; target: Omit<TargetInput, 'provider_id'> } {
  const [head = '', ...opts] = raw.split(',').map((s) => s.trim());
  const slash = head.indexOf('/');
  if (slash <= 0 || slash === head.length - 1)
    throw new UsageError(`--target must look like PROVIDER/MODEL[,weight=N][,tier=N], got "${raw}"`, command);
  const target: Omit<TargetInput, 'provider_id'> = { model: head.slice(slash + 1) };
  for (const opt of opts) {
    const m = /^(weight|tier)=(\d+)$/.exec(opt);
    const max = m?.[1] === 'weight' ? 1000 : 10;
    if (!m || Number(m[2]) < 1 || Number(m[2]) > max)
      throw new UsageError(
        `--target options are weight=1-1000 and tier=1-10, got "${opt}" in "${raw}"`,
        command,
      );
    target[m[1] as 'weight' | 'tier'] = Number(m[2]);
  }
  return { provider: head.slice(0, slash), target };
}

const create: CommandSpec = {
  name: 'routes create',
  summary: 'create a route: a model name clients send → provider models in tiers with weights',
  usage: '--model NAME --target PROVIDER/MODEL[,weight=N][,tier=N]… [options]',
  description: [
    'Clients sending --model get one of the targets: tier 1 first (by weight), a higher tier as the fallback.',
    'A route whose model equals a provider model id takes precedence over the provider. See docs/routes.md.',
  ],
  options: {
    model: { type: 'string', value: 'NAME', help: 'the model name clients send (required; unique)' },
    target: {
      type: 'string',
      multiple: true,
      value: 'PROVIDER/MODEL[,weight=N][,tier=N]',
      help: 'a target: provider name or id, the model it receives, weight 1-1000 (default 1), tier 1-10 (default 1); repeat it (required)',
    },
    'max-attempts': {
      type: 'string',
      value: 'N',
      help: 'attempts per request, first try + fallbacks, 1-10 (default 3)',
    },
    disabled: { type: 'boolean', help: 'create it disabled' },
    quiet: { type: 'boolean', short: 'q', help: 'print only the new id (for scripts)' },
  },
  positionals: { min: 0, max: 0 },
  examples: [
    'floodgate routes create --model chat-default --target openai/gpt-4o-mini,weight=3 --target groq/llama-3.1-8b-instant,tier=2',
  ],
  async run(ctx) {
    const v = ctx.values;
    const model = reqString(v, 'model', this.name);
    const raw = (v.target as string[] | undefined) ?? [];
    if (raw.length === 0) throw new UsageError('--target is required', this.name);
    const parsed = raw.map((t) => parseTarget(t, this.name));
    const client = ctx.client();
    const providers = await providerIds(
      client,
      parsed.map((p) => p.provider),
    );
    const body: Record<string, unknown> = {
      model,
      targets: parsed.map((p) => ({ provider_id: providers.get(p.provider)!, ...p.target })),
    };
    const attempts = optInt(v, 'max-attempts', this.name, { min: 1, max: 10 });
    if (attempts !== undefined) body.max_attempts = attempts;
    if (optBool(v, 'disabled')) body.enabled = false;
    const route = await client.post<Route>('/api/admin/routes', body);
    if (ctx.json) return ctx.out.json(route);
    if (optBool(v, 'quiet')) return ctx.out.line(route.id);
    ctx.out.line(`Created route ${route.id} (${route.model})`);
    ctx.out.record([
      ['targets', targetsText(route)],
      ['max attempts', route.max_attempts],
      ['status', route.enabled ? 'enabled' : 'disabled'],
    ]);
  },
};

/** Provider names (case-insensitive) or ids → ids, with one listing. */
async function providerIds(client: AdminClient, refs: string[]): Promise<Map<string, string>> {
  const all = await client.get<Provider[]>('/api/admin/providers');
  const out = new Map<string, string>();
  for (const ref of refs) {
    const found = all.find((p) =>
      isUuid(ref) ? p.id === ref.toLowerCase() : p.name.toLowerCase() === ref.toLowerCase(),
    );
    if (!found) {
      const names = all.map((p) => p.name).join(', ');
      throw new CommandError(`no provider named "${ref}" (providers: ${names || 'none yet'})`);
    }
    out.set(ref, found.id);
  }
  return out;
}

const list: CommandSpec = {
  name: 'routes list',
  summary: 'list routes with their targets',
  usage: '',
  options: {},
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const routes = await ctx.client().get<Route[]>('/api/admin/routes');
    if (ctx.json) return ctx.out.json(routes);
    ctx.out.table(ROUTE_COLUMNS, routes, '(no routes)');
  },
};

const remove: CommandSpec = {
  name: 'routes delete',
  summary: 'delete a route (its model name stops routing through it)',
  usage: 'ID|MODEL',
  options: {},
  positionals: { min: 1, max: 1 },
  examples: ['floodgate routes delete chat-default'],
  async run(ctx) {
    const client = ctx.client();
    const ref = ctx.positionals[0]!;
    let route: Route | undefined;
    if (isUuid(ref)) route = await client.get<Route>(`/api/admin/routes/${ref}`);
    else {
      route = (await client.get<Route[]>('/api/admin/routes')).find((r) => r.model === ref);
      if (!route) throw new CommandError(`no route for model "${ref}"`);
    }
    await client.delete(`/api/admin/routes/${route.id}`);
    if (ctx.json) return ctx.out.json({ id: route.id, model: route.model, deleted: true });
    ctx.out.line(`deleted route ${route.model} (${route.id})`);
  },
};

export const ROUTES_COMMANDS = [create, list, remove];
