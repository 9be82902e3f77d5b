import type { Status, StatusKey } from '../api-types.js';
import type { CommandSpec } from '../command.js';
import { duration, type Column } from '../output.js';

function perSecond(n: number): string {
  return `${Math.round(n * 100) / 100}/s`;
}

function queueText(q: Status['queue']): string {
  return `${q.total} (urgent ${q.urgent}, high ${q.high}, normal ${q.normal}, low ${q.low})`;
}

type ProviderRow = Status['providers'][number];
type KeyRow = StatusKey & { provider: string };

const PROVIDER_COLUMNS: Column<ProviderRow>[] = [
  { header: 'PROVIDER', value: 'name' },
  { header: 'STATUS', value: (p: ProviderRow) => (p.enabled ? 'enabled' : 'disabled') },
  { header: 'QUEUED', value: (p: ProviderRow) => p.queue.total, align: 'right' },
  {
    header: 'RETREAT',
    value: (p: ProviderRow) =>
      p.retreat
        ? `${p.retreat.state}${p.retreat.effective_rpm !== null && p.retreat.base_rpm !== null ? ` ${p.retreat.effective_rpm}/${p.retreat.base_rpm} rpm` : ''}`
        : null,
  },
  {
    header: 'KEYS',
    value: (p: ProviderRow) =>
      Object.entries(p.key_states)
        .filter(([, n]) => n > 0)
        .map(([state, n]) => `${n} ${state}`)
        .join(', ') || 'none',
  },
];

const KEY_COLUMNS: Column<KeyRow>[] = [
  { header: 'PROVIDER', value: 'provider' },
  { header: 'KEY', value: 'label' },
  {
    header: 'STATE',
    value: (k) => (k.state === 'cooling' ? `cooling ${duration(k.cooldown_remaining_seconds)}` : k.state),
  },
  {
    header: 'CONCURRENCY',
    value: (k) => `${k.concurrency_mode}${k.concurrency_limit !== null ? ` ${k.concurrency_limit}` : ''}`,
  },
  { header: 'IN FLIGHT', value: 'in_flight', align: 'right' },
  { header: 'RPM USED', value: (k) => (k.max_rpm ? `${k.rpm_used ?? '-'}/${k.max_rpm}` : k.rpm_used) },
];

const status: CommandSpec = {
  name: 'status',
  summary: 'what the gateway is doing right now (GET /api/admin/status)',
  usage: '',
  description: [
    'Request counters are those of the instance that answers; queues, keys and retreat are shared',
    'state (every instance answers the same).',
  ],
  options: {},
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const s = await ctx.client().get<Status>('/api/admin/status');
    if (ctx.json) return ctx.out.json(s);
    const out = ctx.out;
    out.line(`Floodgate ${s.version}, ${s.mode} mode, up ${duration(s.uptime_seconds)}`);
    out.record([
      ['instances', `${s.instances.length} (${s.instances.map((i) => i.hostname).join(', ')})`],
      [
        'requests',
        `${s.requests.http_total} HTTP, ${s.requests.relayed_total} relayed (this instance); ` +
          `${perSecond(s.throughput.relayed_per_second)} relayed over the last ${s.throughput.window_seconds} s`,
      ],
      [
        'refused',
        `${s.requests.rate_limited_total} rate limited, ${s.requests.upstream_429_total} upstream 429, ` +
          `${s.errors.upstream_errors ?? 0} upstream errors, ${s.errors.upstream_timeouts ?? 0} timeouts`,
      ],
      ['tokens', `${s.requests.tokens.prompt} prompt, ${s.requests.tokens.completion} completion`],
      ['queue', queueText(s.queue)],
    ]);
    out.line();
    out.table(PROVIDER_COLUMNS, s.providers, '(no providers)');
    const keys: KeyRow[] = s.providers.flatMap((p) => p.keys.map((k) => ({ ...k, provider: p.name })));
    if (keys.length > 0) {
      out.line();
      out.table(KEY_COLUMNS, keys);
    }
    if (s.problems.length > 0) {
      out.line();
      for (const p of s.problems) out.warn(`status incomplete: ${p}`);
    }
  },
};

export const STATUS_COMMANDS = [status];
