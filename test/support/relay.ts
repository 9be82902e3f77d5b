import OpenAI from 'openai';
import { newApiKey, bearer } from './auth.js';
import { FakeProvider, type FakeProviderOptions } from './fake-provider.js';
import { getJson, startGateway, type Mode, type TestGateway } from './gateway.js';

export interface RelayFixture {
  gw: TestGateway;
  fake: FakeProvider;
  adminKey: string;
  providerId: string;
  /** Upstream key values → their ids in Floodgate. */
  keyIds: Record<string, string>;
  /** An OpenAI SDK client pointed at Floodgate with the admin key (maxRetries 0). */
  client: OpenAI;
  sdk(apiKey: string): OpenAI;
  close(): Promise<void>;
}

export interface RelaySetup {
  env?: Record<string, string>;
  fake?: FakeProviderOptions;
  provider?: Record<string, unknown>;
  /** Upstream keys to add, in order (value + options such as priority, max_rpm, max_concurrent). */
  keys?: {
    key: string;
    label?: string;
    priority?: number;
    max_rpm?: number;
    max_concurrent?: number | null;
  }[];
}

export async function adminCall(
  gw: { url: string },
  adminKey: string,
  method: string,
  path: string,
  body?: unknown,
) {
  return getJson(`${gw.url}${path}`, {
    method,
    headers: bearer(adminKey),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** A gateway in front of a fake provider, with one provider and its upstream keys configured through the admin API. */
export async function startRelay(mode: Mode, setup: RelaySetup = {}): Promise<RelayFixture> {
  const fake = await FakeProvider.start(setup.fake);
  const adminKey = newApiKey();
  const gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: adminKey, ...setup.env });
  const provider = await adminCall(gw, adminKey, 'POST', '/api/admin/providers', {
    name: 'fake',
    base_url: fake.baseUrl,
    models: fake.models,
    timeout_ms: 5000,
    ...setup.provider,
  });
  if (provider.status !== 201)
    throw new Error(`provider: ${provider.status} ${JSON.stringify(provider.body)}`);
  const keyIds: Record<string, string> = {};
  for (const [i, k] of (setup.keys ?? [{ key: 'sk-fake-1' }]).entries()) {
    const created = await adminCall(gw, adminKey, 'POST', `/api/admin/providers/${provider.body.id}/keys`, {
      label: k.label ?? `key-${i + 1}`,
      ...k,
    });
    if (created.status !== 201)
      throw new Error(`upstream key: ${created.status} ${JSON.stringify(created.body)}`);
    keyIds[k.key] = created.body.id;
  }
  const sdk = (apiKey: string) =>
    new OpenAI({ apiKey, baseURL: `${gw.url}/v1`, maxRetries: 0, timeout: 20_000 });
  return {
    gw,
    fake,
    adminKey,
    providerId: provider.body.id,
    keyIds,
    client: sdk(adminKey),
    sdk,
    close: async () => {
      await gw.close();
      await fake.close();
    },
  };
}
