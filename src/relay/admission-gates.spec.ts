import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { selectionScript } from '../key-pool/infrastructure/key-selection.script.js';
import { MemoryAtomicStore } from '../state/atomic-store.js';
import { decodePopped, queueKeys, StorePriorityQueue } from '../state/priority-queue.js';
import {
  ALREADY_DISPATCHED,
  combineGates,
  decodeGrantBox,
  encodeGrantBox,
  GRANT_BOX_TTL_MS,
  grantBoxKey,
  QUEUE_GATE,
  QueueMode,
  readGrantBoxScript,
} from './admission-gates.js';

const SRC = new URL('../', import.meta.url).pathname;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? sources(join(dir, e.name))
      : e.name.endsWith('.ts') && !e.name.endsWith('.spec.ts')
        ? [join(dir, e.name)]
        : [],
  );
}

describe("the queue's keys are Floodgate's own", () => {
  it('no source reads or writes BullMQ keys, nor imports BullMQ', () => {
    const offenders = sources(SRC).filter((file) => {
      const text = readFileSync(file, 'utf8');
      return /['"`]bull:|:prioritized\b|from 'bullmq'|from '@nestjs\/bullmq'/.test(text);
    });
    expect(offenders).toEqual([]);
  });

  it('the admission Lua names no key but its KEYS (the queue gate composed with the selection)', () => {
    const lua = selectionScript(combineGates([QUEUE_GATE])).lua;
    expect(lua).not.toMatch(/bull/i);
    // every redis.call's key argument is a variable, never a literal key name
    expect(lua).not.toMatch(/redis\.call\('[A-Z]+',\s*'/);
  });

  it('queue keys carry the queue as hash tag under fq:', () => {
    expect(queueKeys('p-1')).toEqual(['fq:{p-1}:wait', 'fq:{p-1}:jobs', 'fq:{p-1}:seq', 'fq:{p-1}:vt']);
    expect(() => queueKeys('bad name')).toThrow();
  });
});

describe('QUEUE_GATE (in-process half)', () => {
  it('respectQueue refuses behind an equal or higher priority; dispatch pops the head with its record', async () => {
    const store = new MemoryAtomicStore();
    try {
      const queue = new StorePriorityQueue(store);
      await queue.add('p', { id: 'low', priority: 4, data: { n: 1 } });
      await queue.add('p', { id: 'high', priority: 2, data: { n: 2 } });
      const [w, j, , t] = queueKeys('p');
      const keys = [w, j, grantBoxKey('p'), t];
      const now = Date.now();
      expect(QUEUE_GATE.check(store.db, keys, ['1', String(QueueMode.respectQueue)], now)).toBeNull();
      expect(QUEUE_GATE.check(store.db, keys, ['2', String(QueueMode.respectQueue)], now)).toEqual([
        'queued_ahead',
        0,
      ]);
      expect(QUEUE_GATE.check(store.db, keys, ['4', String(QueueMode.bypass)], now)).toBeNull();
      expect(QUEUE_GATE.check(store.db, keys, ['1', String(QueueMode.dispatch)], now)).toBeNull();
      const popped = QUEUE_GATE.commit(store.db, keys, ['1', String(QueueMode.dispatch)], now, 'k');
      expect(decodePopped(popped as string)).toMatchObject({ id: 'high', priority: 2, data: { n: 2 } });
      expect(QUEUE_GATE.commit(store.db, keys, ['1', String(QueueMode.respectQueue)], now, 'k')).toBeNull();
      expect(await queue.counts('p', [1, 2, 3, 4])).toEqual({ 1: 0, 2: 0, 3: 0, 4: 1 });
      await queue.remove('p', 'low');
      expect(QUEUE_GATE.check(store.db, keys, ['1', String(QueueMode.dispatch)], now)).toEqual([
        'queue_empty',
        0,
      ]);
    } finally {
      store.close();
    }
  });
});

describe('grant boxes (a dispatch step that can be run again)', () => {
  it('box keys live in the queue’s hash slot; the placeholder ends with ":"', () => {
    expect(grantBoxKey('p-1', 'd1')).toBe('fq:{p-1}:grant:d1');
    expect(grantBoxKey('p-1')).toBe('fq:{p-1}:grant:');
    expect(() => grantBoxKey('bad name', 'd1')).toThrow();
  });

  it('encode/decode round-trips, the output keeps its newline; malformed records decode to null', () => {
    const box = { keyId: 'k', leaseId: 'l', at: 1796514872654, inFlight: 3, output: 'job\n{"p":1}' };
    expect(decodeGrantBox(encodeGrantBox(box))).toEqual(box);
    expect(decodeGrantBox(encodeGrantBox({ ...box, output: '' }))).toEqual({ ...box, output: '' });
    expect(decodeGrantBox('k\nl\n1')).toBeNull();
    expect(decodeGrantBox('k\nl\nnot-a-number\n1\n')).toBeNull();
    expect(decodeGrantBox('\nl\n1\n1\n')).toBeNull();
  });

  it('in process: the commit keeps what it did; the same step again is refused with it and pops nothing', async () => {
    const store = new MemoryAtomicStore();
    try {
      const queue = new StorePriorityQueue(store);
      await queue.add('p', { id: 'a', priority: 2, data: { n: 1 } });
      await queue.add('p', { id: 'b', priority: 2, data: { n: 2 } });
      const [wait, jobs, , tags] = queueKeys('p');
      const keys = [wait, jobs, grantBoxKey('p', 'd1'), tags];
      const args = ['1', String(QueueMode.dispatch), '', 'me'];
      const now = Date.now();
      expect(QUEUE_GATE.check(store.db, keys, args, now)).toBeNull();
      const out = QUEUE_GATE.commit(store.db, keys, args, now, 'k1', 1, 'lease-1') as string;
      expect(decodePopped(out)).toMatchObject({ id: 'a' });
      expect(store.db.pttl(keys[2]!)).toBeGreaterThan(GRANT_BOX_TTL_MS - 1000);
      const again = QUEUE_GATE.check(store.db, keys, args, now);
      expect(again?.[0].startsWith(ALREADY_DISPATCHED)).toBe(true);
      expect(decodeGrantBox(again![0].slice(ALREADY_DISPATCHED.length))).toEqual({
        keyId: 'k1',
        leaseId: 'lease-1',
        at: now,
        inFlight: 1,
        output: out,
      });
      expect(await queue.counts('p', [2])).toEqual({ 2: 1 });
      // another step (its own box) pops the next job; without a box nothing is kept
      const other = [wait, jobs, grantBoxKey('p', 'd2'), tags];
      expect(QUEUE_GATE.check(store.db, other, args, now)).toBeNull();
      const noBox = [wait, jobs, grantBoxKey('p'), tags];
      expect(
        decodePopped(QUEUE_GATE.commit(store.db, noBox, args, now, 'k1', 2, 'lease-2') as string),
      ).toMatchObject({ id: 'b' });
      expect(store.db.exists(grantBoxKey('p'))).toBe(false);
      // a step that found only expired jobs keeps its lease in the box too (given back by the caller)
      const empty = [wait, jobs, grantBoxKey('p', 'd3'), tags];
      expect(QUEUE_GATE.commit(store.db, empty, args, now, 'k1', 3, 'lease-3')).toBe('');
      expect(decodeGrantBox(store.db.get(empty[2]!)!)).toMatchObject({ leaseId: 'lease-3', output: '' });
      // what a dispatcher whose reply was lost reads
      expect(decodeGrantBox((await store.run(readGrantBoxScript, [keys[2]!], []))!)).toMatchObject({
        leaseId: 'lease-1',
        output: out,
      });
      expect(await store.run(readGrantBoxScript, [grantBoxKey('p', 'never')], [])).toBeNull();
      // other modes never read the box
      expect(QUEUE_GATE.check(store.db, keys, ['1', String(QueueMode.respectQueue)], now)).toBeNull();
    } finally {
      store.close();
    }
  });
});
