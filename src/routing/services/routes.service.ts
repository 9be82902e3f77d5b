import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import { AuditService } from '../../audit/audit.service.js';
import { ApiError } from '../../common/api-error.js';
import { KeyPoolService } from '../../key-pool/services/key-pool.service.js';
import { PubSub, type Unsubscribe } from '../../state/pub-sub.js';
import type { CreateRouteDto, RouteDto, RouteTargetInputDto, UpdateRouteDto } from '../dto/route.dto.js';
import { ROUTE_DEFAULTS, routeProblems } from '../domain/route-rules.js';
import {
  isUniqueViolation,
  RouteRepository,
  toStoredTarget,
  type RouteFields,
  type StoredRoute,
} from '../infrastructure/route.repository.js';
import type { RouteDef, RouteTarget } from '../routing.types.js';

/** Cache invalidation between instances (message: the route id, or `*`). */
export const ROUTES_CHANNEL = 'routing:routes';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** After a failed load with routes already loaded: serve those, try Postgres again after this. */
const RELOAD_BACKOFF_MS = 1000;

/** Who writes: the admin API (audited with the caller) or PROVIDERS_FILE at start-up. */
export interface RouteWriteContext {
  request: FastifyRequest | null;
  source: 'api' | 'file';
}

interface Snapshot {
  byModel: Map<string, RouteDef>;
  list: RouteDef[];
}

function snapshotOf(routes: RouteDef[]): Snapshot {
  return { byModel: new Map(routes.map((r) => [r.model, r])), list: routes };
}

function def(r: StoredRoute): RouteDef {
  const { source: _source, ...rest } = r;
  return rest;
}

/**
 * Routes: admin CRUD (audited), PROVIDERS_FILE's `routes:` section, and the in-process cache the
 * relay resolves aliases from (dropped on every write here and, via pub/sub, on every instance).
 *
 * The cache holds every enabled route, loaded in one query the first time it is needed after a
 * drop. A failed load is not cached; with routes loaded before, the last ones keep serving (a
 * Postgres outage does not take routing down) and Postgres is retried at most once a second.
 */
@Injectable()
export class RoutesService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('Routes');
  private cache: Promise<Snapshot> | null = null;
  /** What `cache` resolved to, once it has (null while it loads, after a drop, or during a reload backoff). */
  private ready: Snapshot | null = null;
  private lastGood: Snapshot | null = null;
  /** Bumped by every drop: a load that started before one never becomes the fallback over a later one. */
  private generation = 0;
  private lastGoodGeneration = -1;
  private retryAtMs = 0;
  private unsubscribe: Unsubscribe | undefined;

  constructor(
    private readonly routes: RouteRepository,
    private readonly pool: KeyPoolService,
    private readonly audit: AuditService,
    @Inject(PubSub) private readonly pubsub: PubSub,
  ) {}

  async onModuleInit(): Promise<void> {
    this.unsubscribe = await this.pubsub.subscribe(ROUTES_CHANNEL, () => this.dropCache());
    // Route writes published while this instance's pub/sub connection was down were missed.
    this.pubsub.onResubscribed(() => this.dropCache());
  }

  async onApplicationShutdown(): Promise<void> {
    await this.unsubscribe?.();
  }

  // ---- the relay's side (cached) --------------------------------------------------------------

  /** The enabled route whose `model` is exactly `model` (cached; no store round trip when warm). */
  async resolve(model: string): Promise<RouteDef | null> {
    return (await this.snapshot()).byModel.get(model) ?? null;
  }

  /**
   * `resolve` without a promise when the cache is loaded (the relay's every request): the route,
   * null for none, or undefined when the cache is not loaded (then use `resolve`).
   */
  resolveNow(model: string): RouteDef | null | undefined {
    const snap = this.ready;
    return snap === null ? undefined : (snap.byModel.get(model) ?? null);
  }

  /** Every enabled route (cached): the model listing. */
  async enabledRoutes(): Promise<RouteDef[]> {
    return (await this.snapshot()).list;
  }

  /** Every route (admin reads, status). Not cached: one query. */
  async list(): Promise<RouteDef[]> {
    return (await this.routes.all()).map(def);
  }

  private snapshot(): Promise<Snapshot> {
    if (this.cache) return this.cache;
    if (this.lastGood && Date.now() < this.retryAtMs) return Promise.resolve(this.lastGood);
    const generation = this.generation;
    const p = this.routes.enabledRoutes().then(
      (rows) => {
        const snap = snapshotOf(rows.map(def));
        if (generation >= this.lastGoodGeneration) {
          this.lastGood = snap;
          this.lastGoodGeneration = generation;
        }
        return snap;
      },
      (err: unknown) => {
        if (this.cache === p) this.cache = null;
        if (!this.lastGood) throw err;
        this.retryAtMs = Date.now() + RELOAD_BACKOFF_MS;
        this.logger.warn({ err }, 'loading routes failed; serving the routes loaded before');
        return this.lastGood;
      },
    );
    this.cache = p;
    p.then(
      (snap) => {
        if (this.cache === p) this.ready = snap;
      },
      () => undefined,
    );
    return p;
  }

  private dropCache(): void {
    this.generation++;
    this.cache = null;
    this.ready = null;
    this.retryAtMs = 0;
  }

  /** Drops the cached routes here and on every other instance. */
  async invalidate(): Promise<void> {
    this.dropCache();
    try {
      await this.pubsub.publish(ROUTES_CHANNEL, '*');
    } catch (err) {
      this.logger.error({ err }, 'publishing a routes invalidation failed');
    }
  }

  // ---- admin API --------------------------------------------------------------------------

  static api(request: FastifyRequest): RouteWriteContext {
    return { request, source: 'api' };
  }

  async listViews(): Promise<RouteDto[]> {
    const [rows, names] = await Promise.all([this.routes.all(), this.providerNames()]);
    return rows.map((r) => this.view(r, names));
  }

  async getView(id: string): Promise<RouteDto> {
    const r = await this.find(id);
    return this.view(r, await this.providerNames());
  }

  async find(id: string): Promise<StoredRoute> {
    const r = UUID.test(id) ? await this.routes.byId(id) : null;
    if (!r) throw ApiError.notFound(`route ${id} not found`, 'route_not_found');
    return r;
  }

  /** The route named `model` (PROVIDERS_FILE's natural key), enabled or not. */
  byModel(model: string): Promise<StoredRoute | null> {
    return this.routes.byModel(model);
  }

  fileRouteIds(): Promise<string[]> {
    return this.routes.fileRouteIds();
  }

  async create(dto: CreateRouteDto, ctx: RouteWriteContext): Promise<StoredRoute> {
    const targets = await this.checkTargets(dto.targets, 'targets');
    this.checkRules({ model: dto.model, targets });
    await this.assertModelFree(dto.model, null);
    const id = randomUUID();
    const fields: RouteFields = {
      model: dto.model,
      targets,
      maxAttempts: dto.max_attempts ?? ROUTE_DEFAULTS.maxAttempts,
      enabled: dto.enabled ?? ROUTE_DEFAULTS.enabled,
      source: ctx.source,
      captureBodies: dto.capture_bodies ?? false,
    };
    try {
      await this.routes.insertWithAudit(id, fields, (m) =>
        this.audit.record(m, ctx.request, {
          action: 'route.create',
          targetType: 'route',
          targetId: id,
          changes: {
            model: fields.model,
            targets: fields.targets.map(toStoredTarget),
            max_attempts: fields.maxAttempts,
            enabled: fields.enabled,
            capture_bodies: fields.captureBodies,
            source: ctx.source,
          },
        }),
      );
    } catch (err) {
      if (isUniqueViolation(err)) throw routeExists(dto.model);
      throw err;
    }
    await this.invalidate();
    return (await this.routes.byId(id))!;
  }

  /** Applies the given fields (`targets` replaced whole); returns the route and whether anything changed. */
  async update(
    id: string,
    dto: UpdateRouteDto,
    ctx: RouteWriteContext,
  ): Promise<{ route: StoredRoute; changed: boolean }> {
    const r = await this.find(id);
    const targets = dto.targets !== undefined ? await this.checkTargets(dto.targets, 'targets') : undefined;
    this.checkRules({ model: dto.model, targets });
    const patch: Partial<RouteFields> = {};
    const changes: Record<string, unknown> = {};
    if (dto.model !== undefined && dto.model !== r.model) {
      await this.assertModelFree(dto.model, r.id);
      patch.model = dto.model;
      changes.model = { from: r.model, to: dto.model };
    }
    if (targets !== undefined) {
      const from = r.targets.map(toStoredTarget);
      const to = targets.map(toStoredTarget);
      if (JSON.stringify(from) !== JSON.stringify(to)) {
        patch.targets = targets;
        changes.targets = { from, to };
      }
    }
    if (dto.max_attempts !== undefined && dto.max_attempts !== r.maxAttempts) {
      patch.maxAttempts = dto.max_attempts;
      changes.max_attempts = { from: r.maxAttempts, to: dto.max_attempts };
    }
    if (dto.enabled !== undefined && dto.enabled !== r.enabled) {
      patch.enabled = dto.enabled;
      changes.enabled = { from: r.enabled, to: dto.enabled };
    }
    if (dto.capture_bodies !== undefined && dto.capture_bodies !== (r.captureBodies ?? false)) {
      patch.captureBodies = dto.capture_bodies;
      changes.capture_bodies = { from: r.captureBodies ?? false, to: dto.capture_bodies };
    }
    if (ctx.source === 'file' && r.source !== 'file') patch.source = 'file';
    if (Object.keys(patch).length === 0) return { route: r, changed: false };
    try {
      await this.routes.updateWithAudit(r.id, patch, async (m) => {
        if (Object.keys(changes).length > 0) {
          await this.audit.record(m, ctx.request, {
            action: 'route.update',
            targetType: 'route',
            targetId: r.id,
            changes: { ...changes, source: ctx.source },
          });
        }
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw routeExists(dto.model ?? r.model);
      throw err;
    }
    await this.invalidate();
    return { route: (await this.routes.byId(r.id))!, changed: true };
  }

  async remove(id: string, ctx: RouteWriteContext): Promise<void> {
    const r = await this.find(id);
    await this.routes.deleteWithAudit(r.id, (m) =>
      this.audit.record(m, ctx.request, {
        action: 'route.delete',
        targetType: 'route',
        targetId: r.id,
        changes: { model: r.model, source: ctx.source },
      }),
    );
    await this.invalidate();
  }

  view(r: StoredRoute, providerNames: Map<string, string>): RouteDto {
    return {
      id: r.id,
      model: r.model,
      targets: r.targets.map((t) => ({
        provider_id: t.providerId,
        provider: providerNames.get(t.providerId) ?? null,
        ...withoutProviderId(toStoredTarget(t)),
      })),
      max_attempts: r.maxAttempts,
      enabled: r.enabled,
      capture_bodies: r.captureBodies ?? false,
      source: r.source,
      created_at: r.createdAt.toISOString(),
      updated_at: r.updatedAt.toISOString(),
    };
  }

  /** id → name of every provider (enabled or not): one query. */
  async providerNames(): Promise<Map<string, string>> {
    return new Map((await this.pool.providerSummaries()).map((p) => [p.id, p.name]));
  }

  // ---- validation -------------------------------------------------------------------------

  private checkRules(route: { model?: string; targets?: RouteTarget[] }): void {
    const problems = routeProblems(route);
    if (problems.length > 0) {
      throw ApiError.badRequest(
        problems.map((p) => p.message).join('; '),
        problems[0]!.path,
        'validation_failed',
      );
    }
  }

  /** Defaults applied; every provider_id must name an existing provider (400 naming `targets[i].provider_id`). */
  private async checkTargets(input: RouteTargetInputDto[], path: string): Promise<RouteTarget[]> {
    const names = await this.providerNames();
    const known = new Map([...names.keys()].map((id) => [id.toLowerCase(), id]));
    return input.map((t, i) => {
      const providerId = known.get(t.provider_id.toLowerCase());
      if (!providerId) {
        throw ApiError.badRequest(
          `${path}[${i}].provider_id: no provider ${t.provider_id}`,
          `${path}[${i}].provider_id`,
          'unknown_provider',
        );
      }
      return {
        providerId,
        model: t.model,
        weight: t.weight ?? ROUTE_DEFAULTS.weight,
        tier: t.tier ?? ROUTE_DEFAULTS.tier,
        timeouts: t.timeouts
          ? {
              connectMs: t.timeouts.connect_ms ?? null,
              firstByteMs: t.timeouts.first_byte_ms ?? null,
              totalMs: t.timeouts.total_ms ?? null,
              streamTotalMs: t.timeouts.stream_total_ms ?? null,
            }
          : null,
        breaker: t.breaker ?? ROUTE_DEFAULTS.breaker,
      };
    });
  }

  private async assertModelFree(model: string, exceptId: string | null): Promise<void> {
    const other = await this.routes.byModel(model);
    if (other && other.id !== exceptId) throw routeExists(model);
  }
}

function withoutProviderId<T extends { provider_id: string }>(t: T): Omit<T, 'provider_id'> {
  const { provider_id: _id, ...rest } = t;
  return rest;
}

function routeExists(model: string): ApiError {
  return ApiError.conflict(`a route for model ${model} exists`, 'model', 'route_exists');
}
