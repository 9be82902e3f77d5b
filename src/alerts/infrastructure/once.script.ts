import type { AtomicScript } from '../../state/atomic-store.js';

/**
 * "First to see this transition": sets KEYS[1] for ARGV[1] ms unless it exists. 1 = this caller
 * announces the event, 0 = another instance (or an earlier report) already did. One store step,
 * only on a transition (a 429 that starts a cooldown, a key refused by its upstream), never per request.
 */
export const onceScript: AtomicScript<number> = {
  name: 'alerts-once',
  lua: `
    if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
    redis.call('SET', KEYS[1], '1', 'PX', tonumber(ARGV[1]))
    return 1
  `,
  local(db, keys, args) {
    const key = keys[0]!;
    if (db.exists(key)) return 0;
    db.set(key, '1', Number(args[0]));
    return 1;
  },
};

/** The claim's key for one subject of one event type (`key.cooling` + key id). */
export function onceKey(eventType: string, subject: string): string {
  return `al:once:{${subject}}:${eventType}`;
}
