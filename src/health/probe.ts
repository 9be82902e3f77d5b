/**
 * Runs a dependency ping with a deadline. Probes that arrive while a ping is in flight share it
 * (within what is left of its deadline) instead of starting another; a ping still pending past its
 * deadline counts as a failure at once, so a frozen dependency can never pile up connections or
 * hang a probe.
 */
export class GuardedProbe {
  private pending: { attempt: Promise<unknown>; startedAt: number } | undefined;

  constructor(
    private readonly ping: () => Promise<unknown>,
    private readonly timeoutMs: number,
  ) {}

  async run(): Promise<{ ok: boolean; latencyMs: number; message?: string }> {
    const started = performance.now();
    const elapsed = () => Math.round((performance.now() - started) * 100) / 100;
    let attempt: Promise<unknown>;
    let deadlineMs = this.timeoutMs;
    if (this.pending) {
      const age = started - this.pending.startedAt;
      if (age >= this.timeoutMs)
        return { ok: false, latencyMs: 0, message: 'previous ping has not answered yet' };
      // Concurrent probes (two readiness checks at once) are one ping, not a false "down".
      attempt = this.pending.attempt;
      deadlineMs = this.timeoutMs - age;
    } else {
      attempt = this.ping();
      const entry = { attempt, startedAt: started };
      this.pending = entry;
      const settle = () => (this.pending = this.pending === entry ? undefined : this.pending);
      void attempt.then(settle, settle);
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        attempt,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${this.timeoutMs} ms`)), deadlineMs);
        }),
      ]);
      return { ok: true, latencyMs: elapsed() };
    } catch (err) {
      return { ok: false, latencyMs: elapsed(), message: err instanceof Error ? err.message : String(err) };
    } finally {
      clearTimeout(timer);
    }
  }
}
