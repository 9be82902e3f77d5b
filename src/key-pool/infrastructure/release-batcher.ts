import type { AtomicStore } from '../../state/atomic-store.js';
import { encodeReleaseBatch, type ReleaseResult, type ReleaseScript } from './release.script.js';

/** At most this many releases share one call (the rest wait for the next one). */
export const RELEASE_BATCH_MAX = 64;

interface Queued {
  keys: string[];
  args: string[];
  resolve: (r: ReleaseResult) => void;
  reject: (err: Error) => void;
  sent: () => void;
}

interface Lane {
  script: ReleaseScript;
  queue: Queued[];
}

/**
 * Coalesces the answer path's release calls per instance (issue 18): a release is sent at once
 * when no release of its lane is in flight (an idle instance adds no delay); while one is, the
 * following releases queue and go together as ONE call (`ReleaseScript.batch`) as soon as it
 * returns — so under load N releases share one round trip, and none waits longer than the call in
 * flight. A lane is one script composition and, on a Redis Cluster, one hash slot (the releases of
 * one batch must live in one slot; grouped by the hash tag of their first key, which all of a
 * release's keys share). In process (LocalDb) every release runs at once: nothing to save.
 *
 * `run` sends (or queues) synchronously; `sent` is called when a queued release is finally
 * written to the connection, so that what must follow it on the connection (the dispatcher's
 * hand-off of the freed slot) can be sent right behind it.
 */
export class ReleaseBatcher {
  private readonly lanes = new Map<string, Lane>();

  constructor(private readonly store: AtomicStore) {}

  /**
   * Runs one release. `queued` is false when it was written at once, true when it waits for the
   * call in flight (`sent` is then called when it goes).
   */
  run(
    script: ReleaseScript,
    keys: string[],
    args: string[],
    sent: () => void,
  ): { reply: Promise<ReleaseResult>; queued: boolean } {
    if (this.store.kind !== 'redis') return { reply: this.store.run(script, keys, args), queued: false };
    const id = this.store.slotted ? `${script.name}\n${hashTag(keys[0] ?? '')}` : script.name;
    const lane = this.lanes.get(id);
    if (lane) {
      const reply = new Promise<ReleaseResult>((resolve, reject) =>
        lane.queue.push({ keys, args, resolve, reject, sent }),
      );
      return { reply, queued: true };
    }
    const fresh: Lane = { script, queue: [] };
    this.lanes.set(id, fresh);
    const reply = this.store.run(script, keys, args);
    const next = (): void => this.next(id, fresh);
    reply.then(next, next);
    return { reply, queued: false };
  }

  /** Releases waiting for their lane's call in flight (for tests). */
  get waiting(): number {
    let n = 0;
    for (const lane of this.lanes.values()) n += lane.queue.length;
    return n;
  }

  private next(id: string, lane: Lane): void {
    if (lane.queue.length === 0) {
      this.lanes.delete(id);
      return;
    }
    const batch = lane.queue.splice(0, RELEASE_BATCH_MAX);
    const done = (): void => this.next(id, lane);
    if (batch.length === 1) {
      const only = batch[0]!;
      const reply = this.store.run(lane.script, only.keys, only.args);
      only.sent();
      reply.then(only.resolve, only.reject);
      reply.then(done, done);
      return;
    }
    const input = encodeReleaseBatch(batch);
    const reply = this.store.run(lane.script.batch, input.keys, input.args);
    for (const q of batch) q.sent();
    reply.then(
      (out) => {
        batch.forEach((q, i) => {
          const r = out[i];
          if (Array.isArray(r)) q.resolve(r);
          else q.reject(new Error(typeof r === 'string' ? r : 'the batched release returned no reply'));
        });
      },
      (err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        for (const q of batch) q.reject(e);
      },
    );
    reply.then(done, done);
  }
}

/** The part of a key Redis Cluster hashes: the first non-empty `{…}`, else the whole key. */
export function hashTag(key: string): string {
  const open = key.indexOf('{');
  if (open < 0) return key;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}
