// Loaded into the gateway process with `node --import bench/lib/gateway-preload.mjs dist/src/main.js`
// (bench only: src/ is untouched and production never loads this). It does three things:
//
//  1. Watchdog: the gateway exits (SIGTERM to itself) when the bench that started it goes away.
//  2. SIGUSR2 runs a full garbage collection when node was started with --expose-gc (memory section).
//  3. Feature switches for the feature ladder, BENCH_DISABLE=<comma list>, by patching the classes
//     of the compiled app before main.js uses them (ESM modules are singletons per URL, so the
//     patched prototypes are the ones Nest instantiates):
//       auth       AuthGuard authenticates the first request for real, then reuses that principal
//                  (no header parsing, hashing or cache lookup).
//       ratelimit  RateLimitGuard admits without a decision (no store round trip), and the TPM
//                  charge after each response is skipped.
//       keypool    AdmissionService.tryAcquire (and .first, after the client limits) returns one lease acquired once for real (no
//                  selection script: no key choice, RPM/TPM/concurrency check, retreat bucket, queue
//                  gate); KeyPoolService.report does nothing (no release script, usage, Adaptive).
//       metrics    prom-client Counter/Histogram record nothing (relay, HTTP and process metrics),
//                  and HandlerContextGuard passes through (no bound series, no handler name).
//       requestlog RequestLogWriter.add drops rows (no batched INSERT), HandlerContextGuard
//                  passes through.
//     A switch whose patch target no longer exists fails the start loudly (the ladder would
//     otherwise silently measure the wrong thing).
import 'reflect-metadata';

const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) {
    setTimeout(() => process.exit(1), 10_000).unref();
    process.kill(process.pid, 'SIGTERM');
  }
}, 1000).unref();

process.on('SIGUSR2', () => {
  if (typeof globalThis.gc === 'function') {
    globalThis.gc();
    globalThis.gc();
  }
});

const disabled = new Set(
  (process.env.BENCH_DISABLE ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);
const KNOWN = new Set(['auth', 'ratelimit', 'keypool', 'metrics', 'requestlog']);
for (const d of disabled) if (!KNOWN.has(d)) throw new Error(`BENCH_DISABLE: unknown switch ${d}`);

const dist = (p) => new URL(`../../dist/src/${p}`, import.meta.url).href;

function patch(cls, method, make, label) {
  const proto = cls?.prototype;
  if (!proto || typeof proto[method] !== 'function') {
    throw new Error(`bench preload: ${label}: ${cls?.name ?? '?'}.${method} not found (the app changed; update bench/lib/gateway-preload.mjs)`);
  }
  proto[method] = make(proto[method]);
}

if (disabled.has('auth')) {
  const { AuthGuard } = await import(dist('auth/auth.guard.js'));
  patch(
    AuthGuard,
    'canActivate',
    (original) => {
      let principal = null;
      return async function canActivate(context) {
        if (principal === null) {
          const ok = await original.call(this, context);
          principal = context.switchToHttp().getRequest().principal ?? null;
          return ok;
        }
        context.switchToHttp().getRequest().principal = principal;
        return true;
      };
    },
    'auth',
  );
}

if (disabled.has('ratelimit')) {
  const { RateLimitGuard } = await import(dist('rate-limit/rate-limit.guard.js'));
  const { RateLimitService } = await import(dist('rate-limit/rate-limit.service.js'));
  patch(RateLimitGuard, 'canActivate', () => async () => true, 'ratelimit');
  patch(RateLimitService, 'chargeTokens', () => async () => undefined, 'ratelimit');
}

if (disabled.has('keypool')) {
  const { AdmissionService } = await import(dist('relay/admission.service.js'));
  const { KeyPoolService } = await import(dist('key-pool/services/key-pool.service.js'));
  // A request's first admission decides its client limits with the lease in one script: without
  // KeyPool, the limits are decided alone (as the guard used to) and the cached lease is used.
  patch(
    AdmissionService,
    'first',
    () =>
      async function first(request, providerId, priority) {
        const verdict = this.rateLimit.hasDeferred(request) ? await this.rateLimit.decideDeferred(request) : null;
        if (verdict?.error) return { verdict, result: null };
        return { verdict, result: await this.tryAcquire(providerId, priority, false) };
      },
    'keypool',
  );
  patch(
    AdmissionService,
    'tryAcquire',
    (original) => {
      const leases = new Map();
      return async function tryAcquire(providerId, ...rest) {
        const cached = leases.get(providerId);
        if (cached) return cached;
        const r = await original.call(this, providerId, ...rest);
        if (r.ok) leases.set(providerId, r);
        return r;
      };
    },
    'keypool',
  );
  const nothing = { cooldownUntilMs: null, cooldownSource: null, invalidated: false, inFlight: 0 };
  patch(KeyPoolService, 'report', () => async () => nothing, 'keypool');
}

/** The handler context (bound series, handler name) is not set: a guard now, an interceptor in older builds. */
async function passHandlerContext(feature) {
  try {
    const { HandlerContextGuard } = await import(dist('observability/handler-context.guard.js'));
    patch(HandlerContextGuard, 'canActivate', () => () => true, feature);
  } catch {
    const { HandlerContextInterceptor } = await import(dist('observability/handler-context.interceptor.js'));
    patch(HandlerContextInterceptor, 'intercept', () => (_context, next) => next.handle(), feature);
  }
}

if (disabled.has('metrics')) {
  const promModule = await import('prom-client');
  const prom = promModule.default ?? promModule;
  const child = { inc() {}, observe() {}, set() {}, dec() {}, startTimer: () => () => 0 };
  // prom-client picks inc/observe from these in each instrument's constructor (after this runs).
  const methods = {
    Counter: ['labels', 'incWithoutExemplar', 'incWithExemplar'],
    Histogram: ['labels', 'observeWithoutExemplar', 'observeWithExemplar'],
  };
  for (const [name, list] of Object.entries(methods)) {
    for (const m of list) patch(prom[name], m, () => (m === 'labels' ? () => child : () => undefined), 'metrics');
  }
  await passHandlerContext('metrics');
}

if (disabled.has('requestlog')) {
  const { RequestLogWriter } = await import(dist('relay/infrastructure/request-log.writer.js'));
  patch(RequestLogWriter, 'add', () => () => undefined, 'requestlog');
  await passHandlerContext('requestlog');
}
