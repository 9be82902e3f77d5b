import { Logger } from '@nestjs/common';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { InFlightRequests } from './in-flight.js';

/**
 * Gives memory back once a burst is over. V8 collects its old generation when allocation asks for
 * it, so a process that goes quiet after a burst keeps the burst's garbage (and its RSS) until the
 * next burst: measured in distributed mode, 169 MB idle → 232 MB ten seconds after a 10 s load, and
 * 147 MB after one full collection. So: when no request has started for `quietMs` and nothing is in
 * flight, and the heap has grown well past what the last collection left, run ONE full collection.
 * Under load it never runs (requests keep arriving); an idle process with probes and scrapes does not
 * collect again until its heap has grown by `GROWTH_BYTES`. Off with MEMORY_IDLE_GC_MS=0.
 */
const GROWTH_BYTES = 24 * 1024 * 1024;

type Gc = () => void;

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
  private heapAfterLast = 0;
  /** Passes run in the current quiet period (0, 1 or 2). */
  private passes = 0;

  constructor(
    private readonly requests: InFlightRequests,
    private readonly quietMs: number,
    private readonly gc: Gc | null = findGc(),
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
      this.passes = 0;
      return false;
    }
    if (!this.gc || this.passes >= 2) return false;
    const quietFor = now - this.lastActivity;
    if (this.passes === 0) {
      if (quietFor < this.quietMs) return false;
      if (getHeapStatistics().total_heap_size < this.heapAfterLast + GROWTH_BYTES) {
        this.passes = 2;
        return false;
      }
    } else if (quietFor < 2 * this.quietMs) return false;
    // A second pass one quiet period later: V8 shrinks its young generation only once its measured
    // allocation rate is low, which the burst still dominated at the first pass.
    this.passes++;
    const t0 = performance.now();
    const before = process.memoryUsage().rss;
    // At least twice, then until the heap stops shrinking (at most 4): the first frees the
    // garbage, the next ones let V8 give back the space it no longer needs.
    let total = getHeapStatistics().total_heap_size;
    for (let i = 0; i < 4; i++) {
      this.gc();
      const next = getHeapStatistics().total_heap_size;
      if (i >= 1 && next >= total * 0.98) break;
      total = next;
    }
    this.heapAfterLast = getHeapStatistics().total_heap_size;
    const after = process.memoryUsage().rss;
    this.log.debug(
      `idle: full collection pass in ${(performance.now() - t0).toFixed(0)} ms, RSS ${(before / 1e6).toFixed(0)} → ${(after / 1e6).toFixed(0)} MB`,
    );
    return true;
  }
}
