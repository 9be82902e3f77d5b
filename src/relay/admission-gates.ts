import type { AdmissionGate } from '../key-pool/key-pool.types.js';
import type { LocalDb } from '../state/local-db.js';
import { PRIORITY_SCORE_FACTOR } from '../state/priority-queue.js';

/**
 * "Nobody of equal or higher priority is already waiting for this provider": the relay's gate in
 * KeyPool's atomic selection. Reads the provider queue's waiting set (BullMQ's layout: score =
 * priority·2³² + arrival), so a request can never overtake one that queued before it at the same or
 * a higher priority. The dispatcher serving the queue passes bypass = 1.
 *
 * KEYS: [waitingSet]   ARGV: [priority, bypass]
 */
export const QUEUE_GATE: StaticGate = {
  name: 'queue',
  keyCount: 1,
  argCount: 2,
  checkLua: `
    if tonumber(GA[2]) == 1 then return nil end
    local ahead = redis.call('ZCOUNT', GK[1], 0, (tonumber(GA[1]) + 1) * ${PRIORITY_SCORE_FACTOR} - 1)
    if ahead > 0 then return {'queued_ahead', 0} end
    return nil`,
  commitLua: `return nil`,
  check(db: LocalDb, keys: string[], args: string[]): [string, number] | null {
    if (args[1] === '1') return null;
    const ahead = db.zcount(keys[0]!, 0, (Number(args[0]) + 1) * PRIORITY_SCORE_FACTOR - 1);
    return ahead > 0 ? ['queued_ahead', 0] : null;
  },
  commit(): void {},
};

/** A gate whose number of KEYS and ARGV is fixed, so several can be combined into one. */
export interface StaticGate extends AdmissionGate {
  keyCount: number;
  argCount: number;
}

/**
 * Several gates as one (still one script, one round trip): checks run in order and the first
 * refusal wins; commits run in order once a key is chosen.
 */
export function combineGates(gates: readonly StaticGate[]): StaticGate {
  const keyCount = gates.reduce((n, g) => n + g.keyCount, 0);
  const argCount = gates.reduce((n, g) => n + g.argCount, 0);
  const lua = (part: 'check' | 'commit') => {
    const lines: string[] = [];
    let k = 0;
    let a = 0;
    gates.forEach((g, i) => {
      const body = part === 'check' ? g.checkLua : g.commitLua;
      const params = part === 'check' ? 'GK, GA, now' : 'GK, GA, now, keyId';
      lines.push(`local g${i} = function(${params})\n${body}\nend`);
      const call = `g${i}(fg_sub(GK, ${k + 1}, ${g.keyCount}), fg_sub(GA, ${a + 1}, ${g.argCount}), now${part === 'commit' ? ', keyId' : ''})`;
      lines.push(part === 'check' ? `do local r = ${call}; if r then return r end end` : `${call}`);
      k += g.keyCount;
      a += g.argCount;
    });
    lines.push('return nil');
    return [
      'local function fg_sub(t, from, n) local out = {} for i = 0, n - 1 do out[i + 1] = t[from + i] end return out end',
      ...lines,
    ].join('\n');
  };
  const slices = (list: string[], counts: (g: StaticGate) => number) => {
    let at = 0;
    return gates.map((g) => {
      const part = list.slice(at, at + counts(g));
      at += counts(g);
      return part;
    });
  };
  return {
    name: gates.map((g) => g.name).join('+'),
    keyCount,
    argCount,
    checkLua: lua('check'),
    commitLua: lua('commit'),
    check(db, keys, args, nowMs) {
      const ks = slices(keys, (g) => g.keyCount);
      const as = slices(args, (g) => g.argCount);
      for (let i = 0; i < gates.length; i++) {
        const refused = gates[i]!.check(db, ks[i]!, as[i]!, nowMs);
        if (refused) return refused;
      }
      return null;
    },
    commit(db, keys, args, nowMs, keyId) {
      const ks = slices(keys, (g) => g.keyCount);
      const as = slices(args, (g) => g.argCount);
      gates.forEach((g, i) => g.commit(db, ks[i]!, as[i]!, nowMs, keyId));
    },
  };
}
