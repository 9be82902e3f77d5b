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
  // Client limits out of the way: these tests send a few thousand requests with one key. And the
  // limiter's decision deadline (100 ms by default): a busy machine makes Redis reach a decision
  // late, which sheds it with 503 rate_limiter_overloaded (by design, docs/reliability.md; seen in
  // routes-breaker-relay under load) — not what these tests are about.
  const env = {
    ADMIN_BOOTSTRAP_KEY: adminKey,
    RATE_LIMIT_KEY_RPM: '1000000',
    RATE_LIMIT_USER_RPM: '1000000',
    RATE_LIMIT_IP_RPM: '1000000',
    RATE_LIMIT_TIMEOUT_MS: '5000',
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
      throw new Error(`route: ${created.status} ${JSON.stringify(created.body)}`);
    },
    async close() {
      await closeAll();
      await Promise.all(Object.values(upstreams).map((u) => u.fake.close()));
    },
  };
  return fixture;
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
