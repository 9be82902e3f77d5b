import { Injectable } from '@nestjs/common';
import type { RouteDef } from '../routing.types.js';

/**
 * Routes: admin CRUD (audited), PROVIDERS_FILE's `routes:` section, and the in-process cache the
 * relay resolves aliases from (dropped on every write here and, via pub/sub, on every instance).
 *
 * STUB (contract): wt-routes fills it in. Signatures are the contract the relay builds against.
 */
@Injectable()
export class RoutesService {
  /** The enabled route whose `model` is exactly `model` (cached; no store round trip when warm). */
  resolve(model: string): Promise<RouteDef | null> {
    void model;
    return Promise.resolve(null);
  }

  /** Every enabled route (cached): the model listing. */
  enabledRoutes(): Promise<RouteDef[]> {
    return Promise.resolve([]);
  }

  /** Every route (admin reads, status). */
  list(): Promise<RouteDef[]> {
    return Promise.resolve([]);
  }
}
