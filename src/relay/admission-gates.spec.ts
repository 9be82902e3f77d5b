import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { selectionScript } from '../key-pool/infrastructure/key-selection.script.js';
import { MemoryAtomicStore } from '../state/atomic-store.js';
import { decodePopped, queueKeys, StorePriorityQueue } from '../state/priority-queue.js';
import { combineGates, QUEUE_GATE, QueueMode } from './admission-gates.js';

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
    expect(queueKeys('p-1')).toEqual(['fq:{p-1}:wait', 'fq:{p-1}:jobs', 'fq:{p-1}:seq']);
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
      const keys = queueKeys('p').slice(0, 2);
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
