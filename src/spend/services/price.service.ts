import { Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import type { ProviderPricing } from '../../key-pool/key-pool.types.js';
import { KeyPoolService } from '../../key-pool/services/key-pool.service.js';
import { costMicroUsd, microPrice, type MicroPrice, type TokenCounts } from '../domain/cost.js';
import { resolvePrice, type PriceSource } from '../domain/price-catalog.js';

const RETRY_MS = 5_000;
/** How long an admin write (or a key marked invalid) waits for the reload before answering anyway. */
const WRITE_WAIT_MS = 2_000;
const MAX_RESOLVED = 10_000;

interface Resolved {
  price: MicroPrice;
  source: PriceSource;
}

/**
 * Prices in process: every provider's `pricing` is loaded once (one query) and reloaded whenever
 * KeyPool drops its provider caches — after an admin write on this instance (the write's answer waits
 * for the reload) and when another instance publishes one. `costOf` is synchronous and never touches
 * Postgres: the relay calls it once per request at account time.
 */
@Injectable()
export class PriceService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('Prices');
  private tables = new Map<string, ProviderPricing>();
  /** `providerId \0 model` → its price (null: none known), computed on first use after each load. */
  private readonly resolved = new Map<string, Resolved | null>();
  private chain: Promise<void> = Promise.resolve();
  private requested = 0;
  private loaded = 0;
  private retry: NodeJS.Timeout | undefined;
  private unregister: (() => void) | undefined;

  constructor(private readonly pool: KeyPoolService) {}

  async onModuleInit(): Promise<void> {
    this.unregister = this.pool.onCacheDrop(() => this.refreshWithin(WRITE_WAIT_MS));
    await this.refresh();
  }

  onModuleDestroy(): void {
    this.unregister?.();
    clearTimeout(this.retry);
  }

  /**
   * Reloads every provider's pricing. Calls made while a load runs are covered by one more load
   * after it (a write committed before the call is always seen). Never rejects: a failed load keeps
   * the previous prices and is retried in 5 s.
   */
  refresh(): Promise<void> {
    const wanted = ++this.requested;
    this.chain = this.chain.then(async () => {
      if (this.loaded >= wanted) return;
      const target = this.requested;
      try {
        this.tables = await this.pool.providerPricing();
        this.resolved.clear();
        this.loaded = target;
      } catch (err) {
        this.logger.warn(
          `loading provider prices failed (${(err as Error).message}); retrying in ${RETRY_MS / 1000} s`,
        );
        clearTimeout(this.retry);
        this.retry = setTimeout(() => void this.refresh(), RETRY_MS);
        this.retry.unref();
      }
    });
    return this.chain;
  }

  /** `refresh`, waited for at most `ms` (a slow Postgres never holds KeyPool's invalidate longer). */
  private refreshWithin(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
      timer.unref();
    });
    return Promise.race([this.refresh(), bound]).finally(() => clearTimeout(timer));
  }

  /** The price of `model` on a provider (its own pricing, else the catalog), in µ$ per million tokens. */
  priceOf(providerId: string, model: string): Resolved | null {
    const key = `${providerId}\0${model}`;
    let hit = this.resolved.get(key);
    if (hit === undefined) {
      const found = resolvePrice(this.tables.get(providerId), model);
      hit = found ? { price: microPrice(found.price), source: found.source } : null;
      if (this.resolved.size >= MAX_RESOLVED) this.resolved.clear();
      this.resolved.set(key, hit);
    }
    return hit;
  }

  /**
   * A request's cost in integer micro-dollars, priced for the provider and model that served it;
   * null when it reached no provider or no price is known for the model.
   */
  costOf(providerId: string | null, model: string | null, tokens: TokenCounts): number | null {
    if (!providerId || !model) return null;
    const resolved = this.priceOf(providerId, model);
    return resolved ? costMicroUsd(tokens, resolved.price) : null;
  }
}
