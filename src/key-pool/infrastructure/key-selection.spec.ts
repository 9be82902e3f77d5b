import { describe, expect, it } from 'vitest';
import type { AtomicScript, ScriptValue } from '../../state/atomic-store.js';
import { LocalDb } from '../../state/local-db.js';
import type { AdmissionGate, ConcurrencyLimit } from '../key-pool.types.js';
import {
  allKeyNames,
  composeInputs,
  composeLeaseInputs,
  keyNames,
  renewScript,
  selectionInputs,
  selectionScript,
  snapshotScript,
  sortedGroup,
  type SelectionCandidate,
  type SelectionResult,
} from './key-selection.script.js';
import { encodeRelease, releaseScript } from './release.script.js';
import { BUCKET_MS, rpmBucketed, tpmBucketed } from './window-buckets.js';

/** The local half with a hand-driven clock: exact window arithmetic, no sleeping. */
class Harness {
  db = new LocalDb();
  now = 1_763_800_000_000;
  private seq = 0;
  constructor(
    readonly candidates: SelectionCandidate[],
    readonly providerId = 'p1',
  ) {}

  run<R extends ScriptValue>(script: AtomicScript<R>, keys: string[], args: (string | number)[]): R {
    this.db.now = this.now;
    return script.local(this.db, keys, args.map(String), this.now);
  }

  /** One selection: the raw script result, the lease id used and the chosen key id. */
  acquire(
    opts: { leaseTtlMs?: number; gate?: { gate: AdmissionGate; keys: string[]; args: string[] } } = {},
  ): {
    r: SelectionResult;
    leaseId: string;
    keyId: string | undefined;
  } {
    const leaseId = `lease-${++this.seq}`;
    const sorted = [...this.candidates].sort((a, b) => a.priority - b.priority);
    const inputs = composeInputs(
      opts.gate ?? null,
      selectionInputs(this.providerId, sorted, leaseId, opts.leaseTtlMs ?? 30_000, 86_400_000),
    );
    const r = this.run(selectionScript(opts.gate?.gate ?? null), inputs.keys, inputs.args);
    return { r, leaseId, keyId: r[0] === 1 ? sorted[r[1] - 1]!.keyId : undefined };
  }

  select(opts: Parameters<Harness['acquire']>[0] = {}): SelectionResult {
    return this.acquire(opts).r;
  }

  picked(): string | null {
    return this.acquire().keyId ?? null;
  }

  report(
    keyId: string,
    leaseId: string,
    opts: { tokens?: number; cooldownMs?: number; notSent?: boolean; acquiredAtMs?: number } = {},
  ) {
    const c = this.candidates.find((x) => x.keyId === keyId);
    const buckets = tpmBucketed(c?.maxTpm);
    const rpm = rpmBucketed(c?.maxRpm) ? { acquiredAtMs: opts.acquiredAtMs ?? this.now } : null;
    return this.run(RELEASE, ...releaseInputs(this.providerId, keyId, leaseId, { ...opts, buckets, rpm }));
  }
}

function key(keyId: string, priority: number, extra: Partial<SelectionCandidate> = {}): SelectionCandidate {
  return {
    keyId,
    priority,
    maxRpm: null,
    maxTpm: null,
    concurrency: { kind: 'none' },
    dbCooldownUntilMs: 0,
    ...extra,
  };
}

describe('selection script (local half)', () => {
  it('priority then LRU: alternates between the two priority-1 keys, then the priority-2 key once both are at max_rpm', () => {
    const h = new Harness([
      key('a', 1, { maxRpm: 3 }),
      key('b', 1, { maxRpm: 3 }),
      key('c', 2, { maxRpm: 3 }),
    ]);
    const picks: (string | null)[] = [];
    for (let i = 0; i < 10; i++) {
      picks.push(h.picked());
      h.now += 10;
    }
    expect(picks).toEqual(['a', 'b', 'a', 'b', 'a', 'b', 'c', 'c', 'c', null]);
  });

  it('true sliding window: a slot frees exactly 60 s after the request that took it, not at a minute boundary', () => {
    const h = new Harness([key('a', 1, { maxRpm: 2 })]);
    const t0 = h.now;
    expect(h.picked()).toBe('a');
    h.now = t0 + 30_000;
    expect(h.picked()).toBe('a');
    h.now = t0 + 59_999;
    const refused = h.select();
    expect(refused).toEqual([0, 'rate_limited', 1, 0, 1, 0]); // the first slot frees in 1 ms
    h.now = t0 + 60_000;
    expect(h.picked()).toBe('a');
    h.now = t0 + 60_001;
    expect(h.select().slice(0, 3)).toEqual([0, 'rate_limited', 29_999]); // next frees at t0 + 90 s
  });

  it('lowering max_rpm below the current count waits for enough slots to expire', () => {
    const h = new Harness([key('a', 1, { maxRpm: 5 })]);
    const t0 = h.now;
    for (let i = 0; i < 5; i++) {
      h.picked();
      h.now += 1000;
    }
    h.candidates[0]!.maxRpm = 2; // 5 in window, limit 2: the 4th-newest… i.e. rank 3 must expire
    expect(h.select().slice(0, 3)).toEqual([0, 'rate_limited', t0 + 3000 + 60_000 - h.now]);
  });

  it('TPM: charged by report; refused while the window holds ≥ max_tpm; retry when enough tokens age out', () => {
    const h = new Harness([key('a', 1, { maxTpm: 1000 })]);
    const t0 = h.now;
    const r1 = h.acquire();
    h.report('a', r1.leaseId, { tokens: 600 });
    h.now = t0 + 10_000;
    const r2 = h.acquire();
    expect(r2.r[0]).toBe(1);
    h.report('a', r2.leaseId, { tokens: 500 });
    h.now = t0 + 20_000;
    // 1100 ≥ 1000; dropping the first charge (600, at t0) leaves 500 < 1000 → ready at t0 + 60 s
    expect(h.select()).toEqual([0, 'rate_limited', 40_000, 0, 1, 0]);
    h.now = t0 + 60_000;
    expect(h.picked()).toBe('a');
    const snap = h.run(snapshotScript, allKeyNames('p1', 'a'), []);
    expect(snap[1]).toBe(500);
  });

  it('TPM above TPM_EXACT_MAX: sub-bucket window, refused at max_tpm, ready when the oldest bucket leaves (≤ 1 bucket late)', () => {
    const h = new Harness([key('a', 1, { maxTpm: 100_000 })]);
    h.now = Math.ceil(h.now / BUCKET_MS) * BUCKET_MS + 300; // 300 ms into a bucket
    const t0 = h.now;
    const r1 = h.acquire();
    h.report('a', r1.leaseId, { tokens: 60_000 });
    h.now = t0 + 10_000;
    h.report('a', h.acquire().leaseId, { tokens: 50_000 });
    h.now = t0 + 20_000;
    // 110,000 ≥ 100,000; without the first charge 50,000 < 100,000: the exact log frees at t0 + 60 s,
    // the buckets when t0's bucket leaves: its end (t0 − 300 + 1000) + 60 s
    expect(h.select()).toEqual([0, 'rate_limited', 40_700, 0, 1, 0]);
    h.now = t0 + 60_699;
    expect(h.select()[0]).toBe(0);
    h.now = t0 + 60_700;
    expect(h.picked()).toBe('a');
    expect(h.run(snapshotScript, allKeyNames('p1', 'a'), [])[1]).toBe(50_000);
    // the exact log was not written; the bucket hash holds one bucket and the sum
    expect(h.db.exists(keyNames('p1', 'a')[2])).toBe(false);
    expect(h.db.hgetall(keyNames('p1', 'a', true)[2])).toEqual({
      [String(Math.floor((t0 + 10_000) / BUCKET_MS))]: '50000',
      s: '50000',
      lo: String(Math.floor((t0 + 10_000) / BUCKET_MS)),
    });
  });

  it('cooldown from report (store) and from Postgres (argument) both skip the key; the earliest recovery is reported', () => {
    const h = new Harness([key('a', 1), key('b', 1), key('c', 1)]);
    const t0 = h.now;
    const la = h.acquire();
    const lb = h.acquire();
    const lc = h.acquire();
    expect([la, lb, lc].map((x) => x.keyId)).toEqual(['a', 'b', 'c']);
    expect(h.report('a', la.leaseId!, { cooldownMs: 12_000 })[0]).toBe(t0 + 12_000);
    h.report('b', lb.leaseId!, { cooldownMs: 30_000 });
    h.candidates[2]!.dbCooldownUntilMs = t0 + 20_000; // e.g. restored from Postgres after a restart
    h.now = t0 + 2000;
    expect(h.select()).toEqual([0, 'cooling', 10_000, 3, 0, 0]);
    h.now = t0 + 12_000;
    expect(h.picked()).toBe('a'); // recovers by itself
  });

  it('a later, shorter 429 never shortens a running cooldown', () => {
    const h = new Harness([key('a', 1)]);
    const t0 = h.now;
    const l1 = h.acquire();
    const l2 = h.acquire();
    h.report('a', l1.leaseId!, { cooldownMs: 30_000 });
    expect(h.report('a', l2.leaseId!, { cooldownMs: 2000 })[0]).toBe(t0 + 30_000);
  });

  it('mixed refusal: the kind of the key that is ready first', () => {
    const h = new Harness([key('a', 1, { maxRpm: 1 }), key('b', 1)]);
    const t0 = h.now;
    const la = h.acquire();
    const lb = h.acquire();
    expect([la.keyId, lb.keyId].sort()).toEqual(['a', 'b']);
    h.report('b', (la.keyId === 'b' ? la : lb).leaseId!, { cooldownMs: 5000 });
    h.now = t0 + 1000;
    expect(h.select()).toEqual([0, 'cooling', 4000, 1, 1, 0]); // b ready in 4 s, a in 59 s
  });

  it('concurrency: a fixed limit skips the key like a full RPM; report releases; expired leases free their slot', () => {
    const fixed: ConcurrencyLimit = { kind: 'fixed', limit: 2 };
    const h = new Harness([
      key('a', 1, { concurrency: fixed }),
      key('b', 2, { concurrency: { kind: 'fixed', limit: 1 } }),
    ]);
    const l1 = h.acquire({ leaseTtlMs: 1000 });
    const l2 = h.acquire({ leaseTtlMs: 1000 });
    expect([l1.keyId, l2.keyId]).toEqual(['a', 'a']);
    expect(l2.r[2]).toBe(2); // in flight on a
    expect(h.acquire({ leaseTtlMs: 1000 }).keyId).toBe('b');
    expect(h.select({ leaseTtlMs: 1000 })).toEqual([0, 'saturated', 1000, 0, 0, 2]);
    expect(h.report('a', l1.leaseId!)[1]).toBe(1);
    expect(h.acquire({ leaseTtlMs: 1000 }).keyId).toBe('a');
    h.now += 500;
    expect(h.run(renewScript, [keyNames('p1', 'a')[3]], [l2.leaseId!, 1000])).toBe(1);
    h.now += 600; // l2 renewed (alive), the other lease on a and b's lease expired
    expect(h.acquire({ leaseTtlMs: 1000 }).keyId).toBe('a');
    expect(h.run(renewScript, [keyNames('p1', 'b')[3]], ['lease-3', 1000])).toBe(0);
  });

  it('learned limit: read from the key hash field `cl` in the same step, initial value when absent', () => {
    const h = new Harness([key('a', 1, { concurrency: { kind: 'learned', initial: 1 } })]);
    expect(h.picked()).toBe('a');
    expect(h.select()[1]).toBe('saturated');
    h.db.hset(keyNames('p1', 'a')[0], { cl: 3 });
    expect(h.picked()).toBe('a');
    expect(h.picked()).toBe('a');
    expect(h.select()[1]).toBe('saturated');
  });

  it('notSent gives the RPM slot back', () => {
    const h = new Harness([key('a', 1, { maxRpm: 1 })]);
    const l = h.acquire();
    expect(h.select()[1]).toBe('rate_limited');
    h.report('a', l.leaseId!, { notSent: true });
    expect(h.picked()).toBe('a');
  });

  it('an admission gate runs first (may refuse) and commits only when a key was chosen', () => {
    const gate: AdmissionGate = {
      name: 'tokens',
      checkLua: '',
      commitLua: '',
      check: (db, keys) => (Number(db.get(keys[0]!) ?? '0') >= 2 ? ['provider_throttled', 750] : null),
      commit: (db, keys, _args, _now, keyId) => {
        db.incrby(keys[0]!, 1);
        db.set(keys[1]!, keyId);
      },
    };
    const h = new Harness([key('a', 1, { maxRpm: 1 }), key('b', 1, { maxRpm: 1 })]);
    const g = { gate, keys: ['tok', 'last'], args: [] };
    expect(h.select({ gate: g })[0]).toBe(1);
    expect(h.db.get('last')).toBe('a');
    expect(h.select({ gate: g })[0]).toBe(1);
    expect(h.select({ gate: g })).toEqual([0, 'gate:provider_throttled', 750, 0, 0, 0]);
    h.db.set('tok', '0');
    expect(h.select({ gate: g })[1]).toBe('rate_limited'); // both keys full: the gate's commit did not run
    expect(h.db.get('tok')).toBe('0');
  });

  it('RPM above RPM_EXACT_MAX: sub-bucket window; full at max_rpm; a request never sent is given back once', () => {
    const h = new Harness([key('a', 1, { maxRpm: 1001 })]);
    h.now = Math.ceil(h.now / BUCKET_MS) * BUCKET_MS + 200;
    const t0 = h.now;
    const leases = [];
    for (let i = 0; i < 1001; i++) leases.push(h.acquire());
    expect(leases.every((l) => l.r[0] === 1)).toBe(true);
    expect(h.db.exists(keyNames('p1', 'a')[1])).toBe(false); // no exact log
    h.now = t0 + 30_000;
    // full; the first bucket (all 1001) leaves at its end + 60 s = t0 − 200 + 61 s
    expect(h.select()).toEqual([0, 'rate_limited', 30_800, 0, 1, 0]);
    h.report('a', leases[0]!.leaseId, { notSent: true, acquiredAtMs: t0 });
    h.report('a', leases[0]!.leaseId, { notSent: true, acquiredAtMs: t0 }); // released already: nothing more
    expect(h.picked()).toBe('a');
    expect(h.select()[0]).toBe(0);
    expect(h.run(snapshotScript, allKeyNames('p1', 'a'), [])[0]).toBe(1001);
  });

  it("the key hash's TTL is renewed on the first use and then once a quarter of it has passed, not per request", () => {
    const h = new Harness([key('a', 1)]);
    const hk = keyNames('p1', 'a')[0];
    const t0 = h.now;
    h.picked();
    expect(h.db.pttl(hk)).toBe(86_400_000);
    expect(h.db.hget(hk, 'rx')).toBe(String(t0));
    h.now = t0 + 3_600_000;
    h.picked();
    expect(h.db.pttl(hk)).toBe(86_400_000 - 3_600_000); // not renewed
    h.now = t0 + 86_400_000 / 4;
    h.picked();
    expect(h.db.pttl(hk)).toBe(86_400_000); // renewed
    expect(h.db.hget(hk, 'rx')).toBe(String(h.now));
  });

  it('no candidates → no_usable_keys', () => {
    expect(new Harness([]).select()).toEqual([0, 'no_usable_keys', 0, 0, 0, 0]);
  });
});

const RELEASE = releaseScript(null);
function releaseInputs(
  providerId: string,
  keyId: string,
  leaseId: string,
  opts: {
    tokens?: number;
    cooldownMs?: number;
    notSent?: boolean;
    buckets?: boolean;
    rpm?: { acquiredAtMs: number } | null;
  },
): [string[], string[]] {
  const { keys, args } = encodeRelease({
    providerId,
    keyId,
    leaseId,
    tokens: opts.tokens ?? 0,
    cooldownMs: opts.cooldownMs ?? 0,
    notSent: opts.notSent === true,
    hashTtlMs: 86_400_000,
    tpmBuckets: opts.buckets === true,
    rpmBuckets: opts.rpm ?? null,
  });
  return [keys, args];
}

describe('composeLeaseInputs', () => {
  it('lays KEYS/ARGV out as composeInputs(selectionInputs(...)) does, the lease id set in a reused tail', () => {
    const candidates = [
      key('a', 1, { maxRpm: 5, concurrency: { kind: 'fixed', limit: 3 } }),
      key('b', 2, { maxTpm: 1_000_000, concurrency: { kind: 'learned', initial: 4 } }),
    ];
    const prepared = selectionInputs('p1', candidates, '', 30_000, 86_400_000);
    const tail = prepared.args.slice(1);
    for (const gate of [null, { keys: ['g1', 'g2'], args: ['x', 7] }]) {
      for (const leaseId of ['lease-1', 'lease-2']) {
        expect(composeLeaseInputs(gate, prepared.keys, leaseId, tail)).toEqual(
          composeInputs(gate, selectionInputs('p1', candidates, leaseId, 30_000, 86_400_000)),
        );
      }
    }
    expect(tail).toEqual(selectionInputs('p1', candidates, 'z', 30_000, 86_400_000).args.slice(1));
  });
});

describe('sortedGroup', () => {
  it('orders g..e by LRU sequence, ties by index — as the comparator sort did, small and large groups', () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed % n;
    };
    for (const size of [1, 2, 3, 4, 8, 33, 40]) {
      for (let round = 0; round < 50; round++) {
        const g = rnd(3);
        const lu = Array.from({ length: g + size + 2 }, () => rnd(4));
        const e = g + size - 1;
        const expected = Array.from({ length: size }, (_, i) => g + i).sort((x, y) =>
          lu[x] !== lu[y] ? lu[x]! - lu[y]! : x - y,
        );
        expect(sortedGroup(lu, g, e)).toEqual(expected);
      }
    }
  });
});
