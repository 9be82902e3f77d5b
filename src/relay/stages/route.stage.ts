import { Injectable } from '@nestjs/common';
import type { Principal } from '../../common/principal.js';
import { KeyPoolService } from '../../key-pool/services/key-pool.service.js';
import { modelAllowed, routeModel, type RoutableProvider as RoutableBase } from '../domain/model-router.js';
import { forbidden, modelNotFound } from '../domain/rejection.js';
import { reject } from './reject.js';

export type RoutableProvider = RoutableBase & { createdAt: Date };

/** Where a request goes: the provider, and the model entry (id or pattern) that matched — the metrics label. */
export interface Routed {
  provider: RoutableProvider;
  modelLabel: string;
}

export interface ModelCard {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

/** model → provider for the relay, and the model listing (the same routes, as the SDK lists them). */
@Injectable()
export class RouteStage {
  constructor(private readonly keyPool: KeyPoolService) {}

  /** The key's allowed_models first (403), then the routes of enabled providers (404). */
  async route(model: string, principal: Principal): Promise<Routed> {
    if (!modelAllowed(model, principal.apiKey?.allowedModels ?? null)) {
      throw reject(forbidden(`This API key may not use model ${model}`, 'model_not_allowed'));
    }
    const route = routeModel(model, await this.keyPool.routableProviders());
    if (!route) throw reject(modelNotFound(model));
    return { provider: route.provider, modelLabel: route.matched };
  }

  async listModels(principal: Principal): Promise<{ object: 'list'; data: ModelCard[] }> {
    const providers = await this.keyPool.routableProviders();
    const seen = new Set<string>();
    const data: ModelCard[] = [];
    for (const p of [...providers].sort((a, b) => a.name.localeCompare(b.name))) {
      for (const id of p.models) {
        if (id.includes('*') || seen.has(id) || !modelAllowed(id, principal.apiKey?.allowedModels ?? null))
          continue;
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
    const route = routeModel(id, await this.keyPool.routableProviders());
    if (!route || !modelAllowed(id, principal.apiKey?.allowedModels ?? null)) throw reject(modelNotFound(id));
    return {
      id,
      object: 'model',
      created: Math.floor(route.provider.createdAt.getTime() / 1000),
      owned_by: route.provider.name,
    };
  }
}
