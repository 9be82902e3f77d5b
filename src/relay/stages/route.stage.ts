import { Injectable } from '@nestjs/common';
import type { Principal } from '../../common/principal.js';
import { KeyPoolService } from '../../key-pool/services/key-pool.service.js';
import type { RouteDef, RouteTarget, TargetRef } from '../../routing/routing.types.js';
import { RoutesService } from '../../routing/services/routes.service.js';
import { modelAllowed, routeModel, type RoutableProvider as RoutableBase } from '../domain/model-router.js';
import { exchangeFor } from '../domain/exchange.js';
import { badRequest, forbidden, modelNotFound } from '../domain/rejection.js';
import { routeTargetHeader } from '../domain/route-model.js';
import { noRouteTarget } from '../domain/route-rules.js';
import type { Endpoint } from '../domain/validation.js';
import { reject } from './reject.js';

export type RoutableProvider = RoutableBase & { createdAt: Date };

/** A route target on an enabled provider: what admission and sending use. */
export interface RoutedTarget {
  target: RouteTarget;
  provider: RoutableProvider;
  /** The breaker's identity of the target. */
  ref: TargetRef;
  tier: number;
  weight: number;
  /** `provider name/model`: the x-floodgate-route-target header. */
  label: string;
}

/** A routed request: its route and the targets it can use (on enabled providers), in definition order. */
export interface RouteContext {
  def: RouteDef;
  targets: RoutedTarget[];
}

/**
 * Where a request goes: the provider (for a route: its first target's, until admission picks one),
 * the metrics' model label (the model entry that matched, or the route's alias), and the route if
 * the model is a route alias.
 */
export interface Routed {
  provider: RoutableProvider;
  modelLabel: string;
  route: RouteContext | null;
}

export interface ModelCard {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

/** Model ids (not aliases) whose provider match is kept per providers list. */
const MODEL_ROUTES_KEPT = 1000;

/** What route aliases are listed as owned by in /v1/models. */
const ROUTE_OWNER = 'floodgate';

/**
 * model → route or provider for the relay, and the model listing (the same routes, as the SDK
 * lists them). A route alias wins over the providers' model ids.
 */
@Injectable()
export class RouteStage {
  /** A route's usable targets, per route definition, built from one providers list (rebuilt when either changes). */
  private readonly resolved = new WeakMap<
    RouteDef,
    {
      providers: readonly RoutableProvider[];
      ctx: RouteContext;
      /** Per client endpoint: the targets whose provider kind can serve it (ctx itself when all can). */
      byEndpoint: Map<Endpoint, RouteContext>;
    }
  >();

  /** KeyPool's routable-providers promise last seen, and what it resolved to (null until it has). */
  private providersFrom: Promise<RoutableProvider[]> | null = null;
  private providersValue: readonly RoutableProvider[] | null = null;
  /** The providers list `modelRoutes` was built from, and the routed model ids (never mutated: shared). */
  private modelRoutesFor: readonly RoutableProvider[] | null = null;
  private readonly modelRoutes = new Map<string, Routed>();

  constructor(
    private readonly keyPool: KeyPoolService,
    private readonly routes: RoutesService,
  ) {}

  /**
   * The key's allowed_models first (403; for a route, the alias the client sent), then a route with
   * that alias (503 no_route_target when none of its targets is on an enabled provider; only the
   * targets whose provider kind can serve `endpoint` are kept — 400 endpoint_not_supported when none
   * can), then the routes of enabled providers (404).
   */
  route(model: string, principal: Principal, endpoint: Endpoint): Routed | Promise<Routed> {
    if (!modelAllowed(model, principal.apiKey?.allowedModels ?? null)) {
      throw reject(forbidden(`This API key may not use model ${model}`, 'model_not_allowed'));
    }
    // Both caches loaded (every request but the first after a change): decided without a promise.
    const def = this.routes.resolveNow(model);
    const providers = this.providersNow();
    if (def !== undefined && providers !== null) return this.decide(model, def, providers, endpoint);
    return this.routeLoading(model, endpoint);
  }

  private async routeLoading(model: string, endpoint: Endpoint): Promise<Routed> {
    const def = await this.routes.resolve(model);
    const providers = await this.keyPool.routableProviders();
    return this.decide(model, def, providers, endpoint);
  }

  /**
   * The providers' list when KeyPool's cached promise has settled (the same array it resolves to),
   * else null. KeyPool hands out one promise per cache fill, so its identity tells a refill.
   */
  private providersNow(): readonly RoutableProvider[] | null {
    const p = this.keyPool.routableProviders();
    if (p !== this.providersFrom) {
      this.providersFrom = p;
      this.providersValue = null;
      p.then(
        (list) => {
          if (this.providersFrom === p) this.providersValue = list;
        },
        () => undefined,
      );
    }
    return this.providersValue;
  }

  private decide(
    model: string,
    def: RouteDef | null,
    providers: readonly RoutableProvider[],
    endpoint: Endpoint,
  ): Routed {
    if (def !== null) {
      const all = this.context(def, providers);
      if (!all.targets[0]) throw reject(noRouteTarget(def.model));
      const ctx = this.servingContext(def, all, endpoint);
      const primary = ctx.targets[0];
      if (!primary)
        throw reject(
          badRequest(
            `No target of route ${def.model} is on a provider whose kind serves this endpoint (${all.targets
              .map((t) => `${t.label}: ${t.provider.kind}`)
              .join(', ')})`,
            'model',
            'endpoint_not_supported',
          ),
        );
      return { provider: primary.provider, modelLabel: def.model, route: ctx };
    }
    // A model id → its provider, per providers list (the match filters and sorts the list: once per
    // model, not per request). Only found models are kept, and at most MODEL_ROUTES_KEPT of them.
    if (this.modelRoutesFor !== providers) {
      this.modelRoutesFor = providers;
      this.modelRoutes.clear();
    }
    let routed = this.modelRoutes.get(model);
    if (routed === undefined) {
      const route = routeModel(model, providers);
      if (!route) throw reject(modelNotFound(model));
      routed = { provider: route.provider, modelLabel: route.matched, route: null };
      if (this.modelRoutes.size < MODEL_ROUTES_KEPT) this.modelRoutes.set(model, routed);
    }
    return routed;
  }

  private context(def: RouteDef, providers: readonly RoutableProvider[]): RouteContext {
    const cached = this.resolved.get(def);
    if (cached && cached.providers === providers) return cached.ctx;
    const byId = new Map(providers.map((p) => [p.id, p]));
    const targets: RoutedTarget[] = [];
    for (const target of def.targets) {
      const provider = byId.get(target.providerId);
      if (!provider) continue; // disabled or deleted
      targets.push({
        target,
        provider,
        ref: { providerId: target.providerId, model: target.model },
        tier: target.tier,
        weight: target.weight,
        label: routeTargetHeader(provider.name, target.model),
      });
    }
    const ctx = { def, targets };
    this.resolved.set(def, { providers, ctx, byEndpoint: new Map() });
    return ctx;
  }

  /** The route's targets that can serve `endpoint` (a mixed route only tries its compatible targets). */
  private servingContext(def: RouteDef, all: RouteContext, endpoint: Endpoint): RouteContext {
    const cache = this.resolved.get(def)!.byEndpoint;
    let ctx = cache.get(endpoint);
    if (!ctx) {
      const targets = all.targets.filter((t) => exchangeFor(endpoint, t.provider.kind) !== null);
      ctx = targets.length === all.targets.length ? all : { def, targets };
      cache.set(endpoint, ctx);
    }
    return ctx;
  }

  async listModels(principal: Principal): Promise<{ object: 'list'; data: ModelCard[] }> {
    const allowed = principal.apiKey?.allowedModels ?? null;
    const [providers, routes] = await Promise.all([
      this.keyPool.routableProviders(),
      this.routes.enabledRoutes(),
    ]);
    const seen = new Set<string>();
    const data: ModelCard[] = [];
    // Route aliases first: an alias wins over a provider's model id of the same name.
    for (const r of routes) {
      if (seen.has(r.model) || !modelAllowed(r.model, allowed)) continue;
      seen.add(r.model);
      data.push(routeCard(r));
    }
    for (const p of [...providers].sort((a, b) => a.name.localeCompare(b.name))) {
      for (const id of p.models) {
        if (id.includes('*') || seen.has(id) || !modelAllowed(id, allowed)) continue;
        seen.add(id);
        data.push({
          id,
          object: 'model',
          created: Math.floor(p.createdAt.getTime() / 1000),
          owned_by: p.name,
        });
      }
    }
    data.sort((a, b) => a.id.localeCompare(b.id));
    return { object: 'list', data };
  }

  async getModel(principal: Principal, id: string): Promise<ModelCard> {
    if (!modelAllowed(id, principal.apiKey?.allowedModels ?? null)) throw reject(modelNotFound(id));
    const def = await this.routes.resolve(id);
    if (def !== null) return routeCard(def);
    const route = routeModel(id, await this.keyPool.routableProviders());
    if (!route) throw reject(modelNotFound(id));
    return {
      id,
      object: 'model',
      created: Math.floor(route.provider.createdAt.getTime() / 1000),
      owned_by: route.provider.name,
    };
  }
}

function routeCard(def: RouteDef): ModelCard {
  return {
    id: def.model,
    object: 'model',
    created: Math.floor(new Date(def.createdAt).getTime() / 1000),
    owned_by: ROUTE_OWNER,
  };
}
