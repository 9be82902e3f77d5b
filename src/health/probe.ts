/**
 * Runs a dependency ping with a deadline. A ping still pending from an earlier probe counts as a
 * failure at once, so a frozen dependency can never pile up connections or hang a probe.
 */
export class GuardedProbe {
  private pending: Promise<unknown> | undefined;

  constructor(
    private readonly ping: () => Promise<unknown>,
    private readonly timeoutMs: number,
  ) {}

  async run(): Promise<{ ok: boolean; latencyMs: number; message?: string }> {
    const started = performance.now();
    const elapsed = () => Math.round((performance.now() - started) * 100) / 100;
    if (this.pending) return { ok: false, latencyMs: 0, message: 'previous ping has not answered yet' };
    const attempt = this.ping();
    this.pending = attempt;
    void attempt.then(
      () => (this.pending = this.pending === attempt ? undefined : this.pending),
      () => (this.pending = this.pending === attempt ? undefined : this.pending),
    );
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        attempt,
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${this.timeoutMs} ms`)),
            this.timeoutMs,
          );
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
