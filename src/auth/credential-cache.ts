import { Inject, Injectable, Logger, OnModuleDestroy, OnModuleInit, Optional } from '@nestjs/common';
import type { Principal, PrincipalBudget, PrincipalTeam, Role } from '../common/principal.js';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { PubSub, type Unsubscribe } from '../state/pub-sub.js';
import { TtlCache } from './ttl-cache.js';

/** A verified API key: everything the guard needs to answer without touching the database. */
export interface CachedKey {
  keyId: string;
  userId: string;
  /** ms since epoch; the key stops working at this instant even while cached. */
  expiresAtMs: number | null;
  principal: Principal;
  /**
   * The usage batch's keys of this entry (`u:<user>`, `k:<key>`), built on the first touch and then
   * reused: the relay's cache hit builds no string per request (UsageRecorder.touchCached).
   */
  usageKeys?: readonly [string, string];
}

/** A JWT subject's user row (the token itself is verified on every request). */
export interface CachedSubject {
  userId: string;
  email: string | null;
  role: Role;
  disabled: boolean;
  /** The user's team and its limits (null: none). */
  team: PrincipalTeam | null;
  /** The user's own spend budget (absent or null: none). */
  userBudget?: PrincipalBudget | null;
}

/** `team`: a team's settings or membership changed — every key and subject of that team is dropped. */
export type InvalidationEvent =
  { kind: 'api_key'; id: string } | { kind: 'user'; id: string } | { kind: 'team'; id: string };

export const AUTH_INVALIDATION_CHANNEL = 'auth:invalidate';
export const CREDENTIAL_CACHE_TTL_MS = 5_000;
export const CREDENTIAL_CACHE_MAX_ENTRIES = 10_000;

/**
 * The in-process cache of verified credentials. Entries live a few seconds; a revoke, a disable, a
 * role change or a delete invalidates them here at once and on every other instance through the
 * PubSub port (Redis in distributed mode), so a revoked key stops within the pub/sub latency
 * instead of the TTL. A fill that raced an invalidation is dropped (generation check), so a lookup
 * that read the row just before a revoke can never re-cache it.
 *
 * Past the TTL an entry is kept until CREDENTIAL_MAX_STALENESS_MS after it was verified (`staleKey`,
 * `staleSubject`): the verifier falls back on it only when Postgres cannot be reached, so callers
 * verified recently keep being served through a database outage. Invalidations drop stale entries
 * too, so a revocation received through pub/sub is honoured at once, stale or not.
 */
@Injectable()
export class CredentialCache implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('CredentialCache');
  readonly keys: TtlCache<CachedKey>;
  readonly subjects: TtlCache<CachedSubject>;
  /** How long after its verification an entry may still be used while Postgres is unreachable (0: never). */
  readonly maxStalenessMs: number;
  private generationCounter = 0;
  private unsubscribe: Unsubscribe | undefined;

  constructor(
    private readonly pubsub: PubSub,
    @Optional() @Inject(APP_CONFIG) config?: AppConfig,
  ) {
    this.maxStalenessMs = config?.auth.credentialMaxStalenessMs ?? 0;
    const keepStale = Math.max(0, this.maxStalenessMs - CREDENTIAL_CACHE_TTL_MS);
    this.keys = new TtlCache(CREDENTIAL_CACHE_MAX_ENTRIES, CREDENTIAL_CACHE_TTL_MS, Date.now, keepStale);
    this.subjects = new TtlCache(CREDENTIAL_CACHE_MAX_ENTRIES, CREDENTIAL_CACHE_TTL_MS, Date.now, keepStale);
  }

  /** A key verified within the max staleness (fresh or expired), for when Postgres cannot be asked. */
  staleKey(hash: string): CachedKey | undefined {
    const hit = this.keys.getStale(hash);
    return hit && hit.ageMs <= this.maxStalenessMs ? hit.value : undefined;
  }

  /** A JWT subject's user row read within the max staleness, for when Postgres cannot be asked. */
  staleSubject(subject: string): CachedSubject | undefined {
    const hit = this.subjects.getStale(subject);
    return hit && hit.ageMs <= this.maxStalenessMs ? hit.value : undefined;
  }

  async onModuleInit(): Promise<void> {
    const subscribed = this.pubsub
      .subscribe(AUTH_INVALIDATION_CHANNEL, (message) => {
        const event = parseEvent(message);
        if (event) this.applyLocally(event);
      })
      .then((unsubscribe) => {
        this.unsubscribe = unsubscribe;
      })
      .catch((err: unknown) => {
        this.logger.error(
          `could not subscribe to ${AUTH_INVALIDATION_CHANNEL}: revocations from other instances apply after the ${CREDENTIAL_CACHE_TTL_MS} ms cache TTL (${
            err instanceof Error ? err.message : String(err)
          })`,
        );
      });
    // Usually immediate; never hold the start-up for a Redis that is still coming up (ioredis
    // completes the subscription when it connects, and the TTL bounds staleness meanwhile).
    await Promise.race([subscribed, new Promise((r) => setTimeout(r, 2_000).unref())]);
  }

  async onModuleDestroy(): Promise<void> {
    await this.unsubscribe?.().catch(() => undefined);
  }

  /** Read before a database lookup; pass to `fill*` afterwards. */
  get generation(): number {
    return this.generationCounter;
  }

  fillKey(hash: string, entry: CachedKey, generationAtLookup: number): void {
    if (generationAtLookup === this.generationCounter) this.keys.set(hash, entry);
  }

  fillSubject(subject: string, entry: CachedSubject, generationAtLookup: number): void {
    if (generationAtLookup === this.generationCounter) this.subjects.set(subject, entry);
  }

  /** Drops the entries here, then tells the other instances. Never throws: the TTL is the fallback. */
  async invalidate(event: InvalidationEvent): Promise<void> {
    this.applyLocally(event);
    try {
      await this.pubsub.publish(AUTH_INVALIDATION_CHANNEL, JSON.stringify(event));
    } catch (err) {
      this.logger.warn(
        `could not broadcast ${event.kind} invalidation (other instances catch up within ${CREDENTIAL_CACHE_TTL_MS} ms): ${
          err instanceof Error ? err.message : String(err)
        }`,
      );
    }
  }

  applyLocally(event: InvalidationEvent): void {
    this.generationCounter++;
    if (event.kind === 'api_key') {
      this.keys.deleteWhere((k) => k.keyId === event.id);
    } else if (event.kind === 'team') {
      this.keys.deleteWhere((k) => k.principal.team?.id === event.id);
      this.subjects.deleteWhere((s) => s.team?.id === event.id);
    } else {
      this.keys.deleteWhere((k) => k.userId === event.id);
      this.subjects.deleteWhere((s) => s.userId === event.id);
    }
  }

  clear(): void {
    this.generationCounter++;
    this.keys.clear();
    this.subjects.clear();
  }
}

function parseEvent(message: string): InvalidationEvent | null {
  try {
    const parsed = JSON.parse(message) as { kind?: unknown; id?: unknown };
    if (
      (parsed.kind === 'api_key' || parsed.kind === 'user' || parsed.kind === 'team') &&
      typeof parsed.id === 'string'
    ) {
      return { kind: parsed.kind, id: parsed.id };
    }
  } catch {
    // ignore malformed messages
  }
  return null;
}
