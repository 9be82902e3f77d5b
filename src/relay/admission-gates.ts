import type { AdmissionGate } from '../key-pool/key-pool.types.js';
import type { AtomicScript } from '../state/atomic-store.js';
import type { LocalDb } from '../state/local-db.js';
import { localPop, POP_LUA, PRIORITY_SCORE_FACTOR, queueKeys } from '../state/priority-queue.js';

/** How a request meets the provider's queue in the admission step (ARGV of QUEUE_GATE). */
export const QueueMode = {
  /** A new request: refused while anybody of equal or higher priority waits (`queued_ahead`). */
  respectQueue: 0,
  /** Skips the queue check (a retry on another key, the queue-full passthrough). */
  bypass: 1,
  /**
   * The dispatcher: admitted only when a live job waits (else `queue_empty`); the job at the head of
   * the queue is popped in the same atomic step as the lease, and handed back with it. With a grant
   * channel (ARGV 3, Redis only), a job queued by another instance gets its grant published to that
   * instance by the same script (see QUEUE_GATE).
   */
  dispatch: 2,
} as const;
export type QueueMode = (typeof QueueMode)[keyof typeof QueueMode];

/** Prefix of a QUEUE_GATE dispatch output whose grant the script already published to the job's instance. */
export const GRANT_PUBLISHED = '>';

/**
 * Refusal code prefix of a dispatch step that had already run (its grant box exists): the code
 * carries the first run's outcome (`decodeGrantBox` of what follows the prefix), nothing changed.
 */
export const ALREADY_DISPATCHED = 'dispatched:';

/**
 * How long a dispatch's grant box is kept: the window in which a dispatcher that lost the script's
 * reply can still learn what it did by reading it (the store's TTL drops it).
 */
export const GRANT_BOX_TTL_MS = 10_000;

/**
 * The grant box of one dispatch step (`dispatchId` unique per step; its repeats use the same one),
 * in the queue's hash slot. Without `dispatchId`: the placeholder the other modes pass (never read
 * or written; a dispatch with it keeps no box).
 */
export function grantBoxKey(providerId: string, dispatchId = ''): string {
  const [wait] = queueKeys(providerId);
  return `${wait.slice(0, -'wait'.length)}grant:${dispatchId}`;
}

/** What a dispatch step did, as its grant box keeps it. */
export interface GrantBox {
  keyId: string;
  leaseId: string;
  /** The store's clock when the lease was taken (ms). */
  at: number;
  inFlight: number;
  /** The step's gate output: the popped job ("id\nrecord", GRANT_PUBLISHED-prefixed when published), '' when none. */
  output: string;
}

/** keyId, leaseId, at, inFlight and the output, one line each (the output last: it has a newline). */
export function encodeGrantBox(box: GrantBox): string {
  return `${box.keyId}\n${box.leaseId}\n${box.at}\n${box.inFlight}\n${box.output}`;
}

export function decodeGrantBox(raw: string): GrantBox | null {
  const parts = raw.split('\n');
  if (parts.length < 5) return null;
  const [keyId, leaseId, at, inFlight] = parts as [string, string, string, string];
  const box = {
    keyId,
    leaseId,
    at: Number(at),
    inFlight: Number(inFlight),
    output: parts.slice(4).join('\n'),
  };
  if (!keyId || !leaseId || !Number.isFinite(box.at) || !Number.isFinite(box.inFlight)) return null;
  return box;
}

/**
 * KEYS: [grantBox]. → the box (encodeGrantBox) or null: how a dispatcher whose step's reply was
 * lost learns what the step did. Read-only (a repeat of a lost read is as good as the first).
 */
export const readGrantBoxScript: AtomicScript<string | null> = {
  name: 'relay-grant-box',
  lua: `return redis.call('GET', KEYS[1])`,
  local(db, keys) {
    return db.get(keys[0]!);
  },
};

/** The grant box a dispatch step keeps, if any (a placeholder key, or none, means none). */
function usesBox(key: string | undefined): key is string {
  return key !== undefined && !key.endsWith(':');
}

/**
 * The relay's gate in KeyPool's atomic selection, over the provider queue's own keys (PriorityQueue
 * layout: `fq:{p}:wait` scored priority·2³² + arrival, `fq:{p}:jobs` the job records). A new request
 * can never overtake one that queued before it at the same or a higher priority; the dispatcher wins
 * a slot and the head of the queue in one step, so a slot is never won without a job to run in it
 * (nor a job taken without a slot), whichever instance frees the slot or queued the job.
 *
 * KEYS: [waitingSet, jobRecords, grantBox (grantBoxKey: the dispatch step's own, or the placeholder),
 *        fair-share tags (queueKeys' 4th: the pop sets the queue's virtual clock there)]
 * ARGV: [priority, mode (QueueMode), grantChannel ('' = none), dispatchingInstance]
 * Commit in dispatch mode returns the popped job ("id\nrecord", see decodePopped). With a grant
 * channel and a job whose record names another instance (`d.instance`), the script also publishes
 * that instance's grant — `{"jobId","grant":{"keyId","leaseId","at","inFlight","providerId"}}` on grantChannel
 * followed by the instance id — and returns the job prefixed with GRANT_PUBLISHED: the waiting
 * request hears of its slot straight from the store, without a hop through the dispatching instance.
 * The in-process half never publishes (one process: there is no other instance to tell).
 *
 * Lost replies (docs/relay.md, "a lost dispatch reply"): with its own grant box, a dispatch step
 * that commits also leaves what it did there (encodeGrantBox: the lease and the output) for
 * GRANT_BOX_TTL_MS — a dispatcher whose reply never came reads it (readGrantBoxScript) — and the
 * same step sent again (same box, same lease id: ioredis re-sending a command after a reconnect)
 * changes nothing and is refused with ALREADY_DISPATCHED + that record — so the grant that only the
 * reply carried is not lost, and no second job is popped under the same lease id.
 */
export const QUEUE_GATE: StaticGate = {
  name: 'queue',
  keyCount: 4,
  argCount: 4,
  checkLua: `
    local mode = tonumber(GA[2])
    if mode == ${QueueMode.bypass} then return nil end
    if mode == ${QueueMode.dispatch} then
      local box = GK[3]
      if box ~= nil and string.sub(box, -1) ~= ':' then
        local done = redis.call('GET', box)
        if done then return {'${ALREADY_DISPATCHED}' .. done, 0} end
      end
      if redis.call('ZCARD', GK[1]) == 0 then return {'queue_empty', 0} end
      return nil
    end
    local ahead = redis.call('ZCOUNT', GK[1], 0, (tonumber(GA[1]) + 1) * ${PRIORITY_SCORE_FACTOR} - 1)
    if ahead > 0 then return {'queued_ahead', 0} end
    return nil`,
  commitLua: `
    if tonumber(GA[2]) ~= ${QueueMode.dispatch} then return nil end
    ${POP_LUA}
    local popped = fq_pop(GK[1], GK[2], GK[4], now)
    local out = popped or ''
    if popped and GA[3] ~= nil and GA[3] ~= '' and leaseId ~= nil then
      local nl = string.find(popped, '\\n', 1, true)
      local ok, rec = pcall(cjson.decode, string.sub(popped, nl + 1))
      local to = ok and type(rec) == 'table' and type(rec.d) == 'table' and rec.d.instance or nil
      if type(to) == 'string' and to ~= GA[4] then
        local grant = {keyId = keyId, leaseId = leaseId, at = now, inFlight = inFlight,
          providerId = string.match(GK[1], 'fq:{(.*)}:wait$')}
        redis.call('PUBLISH', GA[3] .. to, cjson.encode({jobId = string.sub(popped, 1, nl - 1), grant = grant}))
        out = '${GRANT_PUBLISHED}' .. popped
      end
    end
    local box = GK[3]
    if box ~= nil and string.sub(box, -1) ~= ':' and leaseId ~= nil then
      redis.call('SET', box, keyId .. '\\n' .. leaseId .. '\\n' .. now .. '\\n' .. inFlight .. '\\n' .. out,
        'PX', ${GRANT_BOX_TTL_MS})
    end
    return out`,
  check(db: LocalDb, keys: string[], args: string[]): [string, number] | null {
    const mode = Number(args[1]);
    if (mode === QueueMode.bypass) return null;
    if (mode === QueueMode.dispatch) {
      const done = usesBox(keys[2]) ? db.get(keys[2]) : null;
      if (done !== null) return [`${ALREADY_DISPATCHED}${done}`, 0];
      return db.zcard(keys[0]!) === 0 ? ['queue_empty', 0] : null;
    }
    const ahead = db.zcount(keys[0]!, 0, (Number(args[0]) + 1) * PRIORITY_SCORE_FACTOR - 1);
    return ahead > 0 ? ['queued_ahead', 0] : null;
  },
  commit(db, keys, args, nowMs, keyId, inFlight, leaseId): string | null {
    if (Number(args[1]) !== QueueMode.dispatch) return null;
    const out = localPop(db, keys[0]!, keys[1]!, keys[3]!, nowMs) ?? '';
    const box = keys[2];
    if (usesBox(box) && leaseId !== undefined && keyId !== undefined && inFlight !== undefined)
      db.set(box, encodeGrantBox({ keyId, leaseId, at: nowMs, inFlight, output: out }), GRANT_BOX_TTL_MS);
    return out;
  },
};

/** A gate whose number of KEYS and ARGV is fixed, so several can be combined into one. */
export interface StaticGate extends AdmissionGate {
  keyCount: number;
  argCount: number;
}

/**
 * Several gates as one (still one script, one round trip): checks run in order and the first
 * refusal wins; commits run in order once a key is chosen, and the first commit output is the
 * combined gate's output.
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
      const params = part === 'check' ? 'GK, GA, now' : 'GK, GA, now, keyId, inFlight, leaseId';
      lines.push(`local g${i} = function(${params})\n${body}\nend`);
      const call = `g${i}(fg_sub(GK, ${k + 1}, ${g.keyCount}), fg_sub(GA, ${a + 1}, ${g.argCount}), now${part === 'commit' ? ', keyId, inFlight, leaseId' : ''})`;
      lines.push(
        part === 'check'
          ? `do local r = ${call}; if r then return r end end`
          : `do local c = ${call}; if c ~= nil and out == nil then out = c end end`,
      );
      k += g.keyCount;
      a += g.argCount;
    });
    lines.push(part === 'check' ? 'return nil' : 'return out');
    return [
      'local function fg_sub(t, from, n) local out = {} for i = 0, n - 1 do out[i + 1] = t[from + i] end return out end',
      ...(part === 'commit' ? ['local out = nil'] : []),
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
    commit(db, keys, args, nowMs, keyId, inFlight, leaseId) {
      const ks = slices(keys, (g) => g.keyCount);
      const as = slices(args, (g) => g.argCount);
      let out: string | null = null;
      gates.forEach((g, i) => {
        const c = g.commit(db, ks[i]!, as[i]!, nowMs, keyId, inFlight, leaseId);
        if (typeof c === 'string' && out === null) out = c;
      });
      return out;
    },
  };
}
