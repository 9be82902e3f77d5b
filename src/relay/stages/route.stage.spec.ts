import { describe, expect, it } from 'vitest';
import type { Principal } from '../../common/principal.js';
import type { KeyPoolService } from '../../key-pool/services/key-pool.service.js';
import type { RouteDef } from '../../routing/routing.types.js';
import { RoutesService } from '../../routing/services/routes.service.js';
import { RouteStage, type RoutableProvider, type Routed } from './route.stage.js';

// The route stage decides without a promise once the route and provider caches are loaded, and
// follows both caches when they are dropped (the next request after a change waits for the reload).

const provider = (id: string, models: string[]): RoutableProvider =>
  ({
    id,
    name: `p-${id}`,
    kind: 'openai',
    models,
    baseUrl: 'http://127.0.0.1:1/v1',
    timeoutMs: 1000,
    rpm: null,
    burst: null,
    createdAt: new Date(0),
  }) as unknown as RoutableProvider;

const routeDef = (model: string, providerId: string): RouteDef => ({
  id: `r-${model}`,
  model,
  targets: [{ providerId, model: 'm1', weight: 1, tier: 1, timeouts: null, breaker: 'auto' as never }],
  maxAttempts: 3,
  enabled: true,
  createdAt: new Date(0),
  updatedAt: new Date(0),
});

function harness() {
  let providers: Promise<RoutableProvider[]> = Promise.resolve([provider('a', ['m1'])]);
  let rows: RouteDef[] = [];
  let dropRoutes: () => void = () => undefined;
  const keyPool = { routableProviders: () => providers } as unknown as KeyPoolService;
  const repository = { enabledRoutes: () => Promise.resolve(rows.map((r) => ({ ...r, source: 'api' }))) };
  const pubsub = {
    subscribe: (_channel: string, fn: () => void) => {
      dropRoutes = fn;
      return Promise.resolve(() => Promise.resolve());
    },
    onResubscribed: () => undefined,
  };
  const routes = new RoutesService(repository as never, {} as never, {} as never, pubsub as never);
  const stage = new RouteStage(keyPool, routes);
  const principal = { apiKey: null } as unknown as Principal;
  return {
    routes,
    init: () => routes.onModuleInit(),
    route: (model: string) => stage.route(model, principal, 'chat'),
    setProviders: (list: RoutableProvider[]): void => {
      providers = Promise.resolve(list);
    },
    setRoutes: (list: RouteDef[]) => {
      rows = list;
      dropRoutes();
    },
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('RouteStage.route', () => {
  it('answers with a promise until both caches are loaded, then without one (same answer)', async () => {
    const h = harness();
    await h.init();
    expect(h.routes.resolveNow('m1')).toBeUndefined();
    const first = h.route('m1');
    expect(first).toBeInstanceOf(Promise);
    const loaded = await first;
    await settle();
    const now = h.route('m1');
    expect(now).not.toBeInstanceOf(Promise);
    expect((now as Routed).provider.id).toBe('a');
    expect((now as Routed).modelLabel).toBe(loaded.modelLabel);
    expect((now as Routed).route).toBeNull();
    expect(() => h.route('unknown')).toThrow(/unknown/);
  });

  it('a new providers list (KeyPool dropped its cache) is waited for, then used without a promise', async () => {
    const h = harness();
    await h.init();
    await h.route('m1');
    await settle();
    expect((h.route('m1') as Routed).provider.id).toBe('a');
    h.setProviders([provider('b', ['m1'])]);
    const next = h.route('m1');
    expect(next).toBeInstanceOf(Promise);
    expect((await next).provider.id).toBe('b');
    await settle();
    expect((h.route('m1') as Routed).provider.id).toBe('b');
    h.setProviders([provider('b', ['m2'])]);
    await expect(h.route('m1')).rejects.toThrow(/m1/);
  });

  it('a route written (routes cache dropped) is seen by the next request', async () => {
    const h = harness();
    await h.init();
    await expect(h.route('alias')).rejects.toThrow(/alias/);
    await settle();
    expect(h.routes.resolveNow('alias')).toBeNull();
    expect(() => h.route('alias')).toThrow(/alias/);
    h.setRoutes([routeDef('alias', 'a')]);
    expect(h.routes.resolveNow('alias')).toBeUndefined();
    const next = h.route('alias');
    expect(next).toBeInstanceOf(Promise);
    const routed = await next;
    expect(routed.modelLabel).toBe('alias');
    expect(routed.route?.targets.map((t) => t.provider.id)).toEqual(['a']);
    await settle();
    expect(h.routes.resolveNow('alias')?.model).toBe('alias');
    expect((h.route('alias') as Routed).route?.def.model).toBe('alias');
  });
});
