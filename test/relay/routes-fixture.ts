import { randomUUID } from 'node:crypto';
import type { RouteDef } from '../../src/routing/routing.types.js';
import { RoutesService } from '../../src/routing/services/routes.service.js';
import { newApiKey } from '../support/auth.js';
import { FakeProvider } from '../support/fake-provider.js';
import { getJson, startGateway, startGateways, type Mode, type TestGateway } from '../support/gateway.js';
import { adminCall } from '../support/relay.js';

/**
 * Gateways (one, or two sharing Postgres and Redis) in front of fake providers, each a real HTTP
 * server with its own provider in Floodgate serving one model (`<name>-model`), plus routes created
 * through POST /api/admin/routes.
 */
export interface Upstream {
  name: string;
  fake: FakeProvider;
  providerId: string;
  model: string;
  keyIds: string[];
}

export interface RoutesFixture {
  gateways: TestGateway[];
  /** The first gateway. */
  gw: TestGateway;
  adminKey: string;
  upstreams: Record<string, Upstream>;
  addUpstream(
    name: string,
    keys?: { max_concurrent?: number | null; max_rpm?: number }[],
    provider?: Record<string, unknown>,
  ): Promise<Upstream>;
  createRoute(body: Record<string, unknown>): Promise<{ id: string; model: string; [k: string]: unknown }>;
  close(): Promise<void>;
}

export async function startRoutes(
  mode: Mode,
  options: { instances?: number; env?: Record<string, string> } = {},
): Promise<RoutesFixture> {
  const adminKey = newApiKey();
  // Client limits out of the way: these tests send a few thousand requests with one key.
  const env = {
    ADMIN_BOOTSTRAP_KEY: adminKey,
    RATE_LIMIT_KEY_RPM: '1000000',
    RATE_LIMIT_USER_RPM: '1000000',
    RATE_LIMIT_IP_RPM: '1000000',
    ...options.env,
  };
  let gateways: TestGateway[];
  let closeAll: () => Promise<void>;
  if ((options.instances ?? 1) > 1) {
    if (mode !== 'distributed') throw new Error('several instances need the distributed mode');
    const cluster = await startGateways(options.instances!, env);
    gateways = cluster.gateways;
    closeAll = () => cluster.close();
  } else {
    const gw = await startGateway(mode, env);
    gateways = [gw];
    closeAll = () => gw.close();
  }
  const gw = gateways[0]!;
  const upstreams: Record<string, Upstream> = {};
  const fixture: RoutesFixture = {
    gateways,
    gw,
    adminKey,
    upstreams,
    async addUpstream(name, keys = [{}], provider = {}) {
      const fake = await FakeProvider.start({ models: [`${name}-model`] });
      const created = await adminCall(gw, adminKey, 'POST', '/api/admin/providers', {
        name,
        base_url: fake.baseUrl,
        models: [`${name}-model`],
        timeout_ms: 10_000,
        ...provider,
      });
      if (created.status !== 201)
        throw new Error(`provider ${name}: ${created.status} ${JSON.stringify(created.body)}`);
      const keyIds: string[] = [];
      for (const [i, k] of keys.entries()) {
        const key = await adminCall(gw, adminKey, 'POST', `/api/admin/providers/${created.body.id}/keys`, {
          label: `${name}-${i + 1}`,
          key: `sk-${name}-${i + 1}`,
          ...k,
        });
        if (key.status !== 201) throw new Error(`key ${name}: ${key.status} ${JSON.stringify(key.body)}`);
        keyIds.push(key.body.id);
      }
      const up = { name, fake, providerId: created.body.id as string, model: `${name}-model`, keyIds };
      upstreams[name] = up;
      return up;
    },
    async createRoute(body) {
      const created = await adminCall(gw, adminKey, 'POST', '/api/admin/routes', body);
      if (created.status === 201) return created.body;
      if (created.status === 404 && process.env.ROUTES_STUB === '1') return injectRoute(gateways, body);
      throw new Error(`route: ${created.status} ${JSON.stringify(created.body)}`);
    },
    async close() {
      await closeAll();
      await Promise.all(Object.values(upstreams).map((u) => u.fake.close()));
    },
  };
  return fixture;
}

/**
 * Development only (ROUTES_STUB=1, before the routes API existed): the route put straight into each
 * instance's RoutesService. The tests proper create routes through the admin API.
 */
function injectRoute(gateways: TestGateway[], body: Record<string, unknown>) {
  const now = new Date();
  const def: RouteDef = {
    id: randomUUID(),
    model: body.model as string,
    maxAttempts: (body.max_attempts as number | undefined) ?? 3,
    enabled: true,
    createdAt: now,
    updatedAt: now,
    targets: (body.targets as Record<string, any>[]).map((t) => ({
      providerId: t.provider_id,
      model: t.model,
      weight: t.weight ?? 1,
      tier: t.tier ?? 1,
      timeouts: t.timeouts
        ? {
            connectMs: t.timeouts.connect_ms ?? null,
            firstByteMs: t.timeouts.first_byte_ms ?? null,
            totalMs: t.timeouts.total_ms ?? null,
            streamTotalMs: t.timeouts.stream_total_ms ?? null,
          }
        : null,
      breaker: t.breaker ?? 'auto',
    })),
  };
  for (const gw of gateways) {
    const svc = gw.app.get(RoutesService) as any;
    const defs: Map<string, RouteDef> = (svc.__stubRoutes ??= new Map());
    defs.set(def.model, def);
    svc.resolve = (m: string) => Promise.resolve(defs.get(m) ?? null);
    svc.enabledRoutes = () => Promise.resolve([...defs.values()]);
    svc.list = svc.enabledRoutes;
  }
  return { id: def.id, model: def.model };
}

/** One chat completion through Floodgate (non-stream): status, headers, parsed body. */
export async function chatVia(
  url: string,
  apiKey: string,
  model: string,
  extra: Record<string, unknown> = {},
): Promise<{ status: number; headers: Headers; body: any }> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], ...extra }),
  });
  const text = await res.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {
    // streams and non-JSON answers stay text
  }
  return { status: res.status, headers: res.headers, body };
}

export { getJson };
