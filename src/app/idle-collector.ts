import { Logger } from '@nestjs/common';
import { getHeapSpaceStatistics, getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { InFlightRequests } from './in-flight.js';

/**
 * Gives memory back once a burst is over. V8 collects its old generation when allocation asks for
 * it, so a process that goes quiet after a burst keeps the burst's garbage (and its RSS) until the
 * next burst: measured in distributed mode, 169 MB idle → 232 MB ten seconds after a 10 s load, and
 * 147 MB after one full collection. So: when no request has started for `quietMs` and nothing is in
 * flight, and the heap has grown well past what the last collection left, run ONE full collection
 * pass. Under load it never runs (requests keep arriving); an idle process with probes and scrapes
 * does not collect again until its heap has grown by `GROWTH_BYTES`. Off with MEMORY_IDLE_GC_MS=0.
 *
 * The young generation (up to 2 × 16 MB of semi-spaces after a burst) is given back only by a
 * collection that V8 runs while its measured allocation rate is low (< 1 MB/s): V8 divides the bytes
 * allocated between its recent collections by their time, over at least the last 5 s
 * (`RATE_WINDOW_MS`). The burst's last stretch (up to a semi-space of allocations since its last
 * collection) counts at the next collection, so: one young-generation collection (a few ms) once the
 * process has been quiet for a second — it closes the burst's books — and, while the young
 * generation is still grown after the pass, another pass at least `RATE_WINDOW_MS` + 1 s after that
 * young-generation collection, which sees only the quiet rate and shrinks it (a quiet of ~7 s: with a
 * request every few seconds it stays grown); if something still allocated in that window (embedded
 * mode writing the burst's request log), again 3 s later. At most `YOUNG_TRIES` of them: a process that keeps allocating
 * > 1 MB/s while idle never gets it shrunk, and is not collected again and again for nothing.
 *
 * Two refinements (issue 14, 2026-12-06; docs/performance.md "Issue 14: RSS after load"). A full
 * pass promotes the young generation's survivors, which V8 books as allocation: a young-generation
 * pass soon after a heap-growth pass failed (the young generation was still 33.6 MB 12 s after the
 * load). So a heap-growth pass that is at most `MERGE_WAIT_MS` from being able to shrink the young
 * generation waits and does both, and one that leaves it grown starts the `SPACING_MS` window
 * itself. And while the young generation keeps filling after the burst (> `ALLOCATING_BYTES`
 * between two checks: embedded mode draining its request log for seconds), the young-generation
 * collection waits until it stops, so V8's window starts after the drain (for at most
 * `ALLOCATING_CHECKS` checks; the heap-growth pass still runs at `quietMs`).
 *
 * One late pass `LATE_PASS_MS` after a burst's pass, when the process is quiet then: state that
 * outlives a burst by design becomes garbage without the heap growing (embedded mode's rate-limit
 * and TPM logs: one entry per request for 60 s, deleted by LocalDb's 10 s sweep; ~35 MB after
 * 30,000 requests at the bench's 1,000,000 RPM limits), so the growth rule alone never collects it.
 */
const GROWTH_BYTES = 24 * 1024 * 1024;
const RATE_WINDOW_MS = 5000;
/** Committed young generation above this = still grown (V8 starts at 1 MB; a burst takes it to 32). */
const YOUNG_SHRUNK_BYTES = 4 * 1024 * 1024;
const YOUNG_TRIES = 3;

const LATE_PASS_MS = 75_000;
const FLUSH_AFTER_MS = 1000;
const SPACING_MS = RATE_WINDOW_MS + 1000;
/** A failed young-generation pass saw allocation in V8's window: a later one sees a later window. */
const RETRY_MS = 3000;
/**
 * Young generation filled by more than this between two checks (~1 s): still allocating, at V8's
 * own "low rate" line (1 MB/s). Lower (512 KB) kept an embedded gateway's start-up allocation from
 * ever counting as quiet: its young generation was still grown at the idle reading in 2 of 3 runs.
 */
const ALLOCATING_BYTES = 1024 * 1024;
const ALLOCATING_CHECKS = 10;
/** A heap-growth pass waits this long at most to be the pass that shrinks the young generation too. */
const MERGE_WAIT_MS = 2000;

/** V8's `gc` (`--expose-gc`): a full collection, or with `{ type: 'minor' }` a young-generation one. */
type Gc = (options?: { type: 'minor' | 'major' }) => void;

/** What the collector reads of the heap (V8's statistics; replaced in the unit test). */
export interface HeapSizes {
  /** Committed heap, all spaces. */
  total(): number;
  /** Committed young generation (new space). */
  young(): number;
  /** Bytes in use in the young generation: grows with every allocation, drops at each collection. */
  youngUsed(): number;
}

const newSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
const v8Sizes: HeapSizes = {
  total: () => getHeapStatistics().total_heap_size,
  young: () => newSpace()?.space_size ?? 0,
  youngUsed: () => newSpace()?.space_used_size ?? 0,
};

function findGc(): Gc | null {
  const exposed = (globalThis as { gc?: Gc }).gc;
  if (typeof exposed === 'function') return exposed;
  try {
    // The flag only makes `gc` visible in contexts created after it is set.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as Gc) : null;
  } catch {
    return null;
  }
}

export class IdleCollector {
  private readonly log = new Logger('Memory');
  private timer: NodeJS.Timeout | null = null;
  private lastStarted = -1;
  private lastActivity = 0;
  private lastYoungPass = -Infinity;
  /** When this quiet period's young-generation collection ran (null: not yet). */
  private flushedAt: number | null = null;
  private heapAfterLast = 0;
  /** When the late pass is due (null: none pending). */
  private lateAt: number | null = null;
  /** Passes run for the young generation alone since the heap last grew. */
  private youngPasses = 0;
  /** The young generation's bytes in use at the previous check. */
  private youngUsedSeen = 0;
  /** Checks in this quiet period that found the young generation still filling. */
  private allocatingTicks = 0;

  constructor(
    private readonly requests: InFlightRequests,
    private readonly quietMs: number,
    private readonly gc: Gc | null = findGc(),
    private readonly heap: HeapSizes = v8Sizes,
  ) {}

  start(): void {
    if (this.quietMs <= 0 || !this.gc || this.timer) return;
    this.timer = setInterval(() => this.tick(), Math.min(1000, this.quietMs));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One check; returns whether it collected (exported for the test). */
  tick(now = Date.now()): boolean {
    const started = this.requests.started;
    if (started !== this.lastStarted || this.requests.count > 0) {
      this.lastStarted = started;
      this.lastActivity = now;
      this.flushedAt = null;
      this.allocatingTicks = 0;
      this.youngUsedSeen = this.heap.youngUsed();
      return false;
    }
    const quietFor = now - this.lastActivity;
    if (!this.gc || quietFor < Math.min(FLUSH_AFTER_MS, this.quietMs)) return false;
    const grew = this.heap.total() >= this.heapAfterLast + GROWTH_BYTES;
    const late = this.lateAt !== null && now >= this.lateAt;
    const young = this.youngPasses < YOUNG_TRIES && this.heap.young() > YOUNG_SHRUNK_BYTES;
    if (!grew && !late && !young) return false;
    // Still allocating after the burst? V8 would book it in
    // the young generation's window: the window starts again once this stops (for at most
    // `ALLOCATING_CHECKS` checks per quiet period).
    let allocating = false;
    if (young && this.allocatingTicks < ALLOCATING_CHECKS) {
      const used = this.heap.youngUsed();
      allocating = used > this.youngUsedSeen + ALLOCATING_BYTES;
      this.youngUsedSeen = used;
      if (allocating) {
        this.allocatingTicks++;
        this.flushedAt = null;
      }
    }
    const due = quietFor >= this.quietMs;
    // (while allocating, no young-generation collection: a heap-growth pass still runs when due)
    if (this.flushedAt === null && !(allocating && grew && due)) {
      if (allocating) return false;
      this.gc({ type: 'minor' });
      this.flushedAt = now;
      this.youngUsedSeen = this.heap.youngUsed();
      return false;
    }
    if (!due) return false;
    // The young generation shrinks only at a collection ≥ 5 s after our last one (see above).
    const sinceFlush = this.flushedAt === null ? 0 : now - this.flushedAt;
    const spaced = this.flushedAt !== null && sinceFlush >= SPACING_MS;
    const shrinkable = young && spaced && now - this.lastYoungPass >= RETRY_MS;
    if (!grew && !late && !shrinkable) return false;
    // One pass for both: a heap-growth pass that could shrink the young generation too by waiting
    // at most MERGE_WAIT_MS waits.
    if (young && !spaced && this.flushedAt !== null && sinceFlush >= SPACING_MS - MERGE_WAIT_MS) return false;
    if (grew) {
      this.youngPasses = 0;
      this.lateAt = now + LATE_PASS_MS;
      if (shrinkable) this.lastYoungPass = now; // a retry for the young generation: RETRY_MS later
    } else {
      if (shrinkable) {
        this.youngPasses++;
        this.lastYoungPass = now;
      }
      if (late) this.lateAt = null;
    }
    const t0 = performance.now();
    const before = process.memoryUsage().rss;
    // At least twice, then until the heap stops shrinking (at most 4): the first frees the
    // garbage, the next ones let V8 give back the space it no longer needs.
    let total = this.heap.total();
    for (let i = 0; i < 4; i++) {
      this.gc();
      const next = this.heap.total();
      if (i >= 1 && next >= total * 0.98) break;
      total = next;
    }
    this.heapAfterLast = this.heap.total();
    this.youngUsedSeen = this.heap.youngUsed();
    // A heap-growth or late pass that left the young generation grown starts V8's next window.
    if (!shrinkable && this.heap.young() > YOUNG_SHRUNK_BYTES) {
      this.flushedAt = now;
      this.lastYoungPass = now;
    }
    const after = process.memoryUsage().rss;
    this.log.debug(
      `idle: full collection pass in ${(performance.now() - t0).toFixed(0)} ms, RSS ${(before / 1e6).toFixed(0)} → ${(after / 1e6).toFixed(0)} MB, young generation ${(this.heap.young() / 1e6).toFixed(0)} MB`,
    );
    return true;
  }
}
