import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Principal } from '../../common/principal.js';
import { AtomicStore, type AtomicScript } from '../../state/atomic-store.js';

/** How long Floodgate remembers who created a response (OpenAI keeps stored responses 30 days). */
export const RESPONSE_OWNER_TTL_MS = 30 * 86_400_000;

/** Who created a stored response, and where it lives: the provider and upstream key that hold it. */
export interface ResponseOwner {
  providerId: string;
  keyId: string;
  /** The client key that created it (null: a JWT caller). */
  apiKeyId: string | null;
  userId: string;
}

/** Whether the caller owns the response: the same client key (a JWT caller: the same user, without a key). */
export function ownedBy(owner: ResponseOwner, principal: Principal): boolean {
  return owner.userId === principal.userId && owner.apiKeyId === (principal.apiKeyId ?? null);
}

const key = (id: string) => `resp:${id}`;

/** SET KEYS[1] ARGV[1] PX ARGV[2]. */
const rememberScript: AtomicScript<number> = {
  name: 'response-owner-set',
  lua: "redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2])) return 1",
  local(db, keys, args) {
    db.set(keys[0]!, args[0]!, Number(args[1]));
    return 1;
  },
};

/** GET KEYS[1] ('' when absent). */
const findScript: AtomicScript<string> = {
  name: 'response-owner-get',
  lua: "return redis.call('GET', KEYS[1]) or ''",
  local: (db, keys) => db.get(keys[0]!) ?? '',
};

/** DEL KEYS[1]. */
const forgetScript: AtomicScript<number> = {
  name: 'response-owner-del',
  lua: "return redis.call('DEL', KEYS[1])",
  local: (db, keys) => db.del(keys[0]!),
};

/**
 * response id → its owner, in the shared state (Redis in distributed mode, the in-process store in
 * embedded mode), one key per response with a 30-day TTL: what `GET|DELETE /v1/responses/{id}` and
 * `previous_response_id` read to reach the provider (and key) that created the response.
 */
@Injectable()
export class ResponseOwners {
  private readonly logger = new Logger('ResponseOwners');

  constructor(@Inject(AtomicStore) private readonly store: AtomicStore) {}

  /**
   * Records the owner without waiting for the store: the command is written to the store's
   * connection now (before the client's answer is), so a GET the client sends after reading its
   * answer finds it; a store failure is logged (the response then can't be fetched through Floodgate).
   */
  remember(id: string, owner: ResponseOwner): void {
    const value = JSON.stringify([owner.providerId, owner.keyId, owner.apiKeyId, owner.userId]);
    this.store.run(rememberScript, [key(id)], [value, RESPONSE_OWNER_TTL_MS]).catch((err: unknown) => {
      this.logger.warn(`could not remember response ${id}'s owner: ${(err as Error).message}`);
    });
  }

  async find(id: string): Promise<ResponseOwner | null> {
    const raw = await this.store.run(findScript, [key(id)], []);
    if (!raw) return null;
    try {
      const [providerId, keyId, apiKeyId, userId] = JSON.parse(raw) as [
        string,
        string,
        string | null,
        string,
      ];
      if (typeof providerId !== 'string' || typeof keyId !== 'string' || typeof userId !== 'string')
        return null;
      return { providerId, keyId, apiKeyId: typeof apiKeyId === 'string' ? apiKeyId : null, userId };
    } catch {
      return null;
    }
  }

  async forget(id: string): Promise<void> {
    await this.store.run(forgetScript, [key(id)], []);
  }
}
