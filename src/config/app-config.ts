import { isIP } from 'node:net';

/**
 * The one typed configuration of Floodgate. `loadConfig` is pure (env in, config out) so it is unit
 * tested without booting anything; every problem is reported as one line naming the variable, what
 * is wrong with the value and what is allowed.
 */
export type NodeEnv = 'development' | 'production' | 'test';
export type Mode = 'embedded' | 'distributed';
export type LogFormat = 'pretty' | 'json';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
export type FailureMode = 'open' | 'closed';
export type QueueFullPolicy = 'reject' | 'passthrough';
export type JwtAlgorithm =
  | 'HS256'
  | 'HS384'
  | 'HS512'
  | 'RS256'
  | 'RS384'
  | 'RS512'
  | 'PS256'
  | 'PS384'
  | 'PS512'
  | 'ES256'
  | 'ES384'
  | 'ES512';

export interface EncryptionKey {
  id: string;
  key: Buffer;
}

export interface RedisNode {
  host: string;
  port: number;
}

export interface AppConfig {
  env: NodeEnv;
  isProduction: boolean;
  /** `distributed` when REDIS_URL or REDIS_CLUSTER_NODES is set: state shared through Redis by many instances. */
  mode: Mode;
  http: {
    host: string;
    port: number;
    bodyLimitBytes: number;
    /** BODY_READ_TIMEOUT_MS: a request (headers and body) not fully received by then gets 408 and is closed. */
    bodyReadTimeoutMs: number;
    trustedProxies: string[];
  };
  database: {
    /** Postgres URL; undefined means embedded PGlite under dataDir. */
    url: string | undefined;
    dataDir: string;
    inMemory: boolean;
    migrationsRun: boolean;
    poolSize: number;
    /**
     * WRITE_BUFFER_MAX_ENTRIES: how much each batched writer (request log rows, key usage minutes,
     * API key/user last-used times) keeps in memory while Postgres cannot be written; past it, new
     * entries are dropped, logged and counted in floodgate_store_writes_dropped_total.
     */
    writeBufferMaxEntries: number;
  };
  redis: {
    /** REDIS_URL: one Redis (or a proxy in front of several). */
    url: string | undefined;
    /** REDIS_CLUSTER_NODES: seed nodes of a Redis Cluster (the alternative to `url`; never both). */
    nodes: RedisNode[] | undefined;
    /** Every key Floodgate writes starts with this prefix (several deployments can share one Redis). */
    prefix: string;
  };
  log: {
    level: LogLevel;
    format: LogFormat;
    /**
     * LOG_REQUEST_CONTEXT: lines logged while a request is served (other than its access line, which
     * always has it) carry the request's `request_id`. Off by default: it takes an AsyncLocalStorage,
     * whose promise hooks cost 6–16 % of the relay's CPU per request on Node 20 (bench/RESULTS.md).
     */
    requestContext: boolean;
  };
  auth: {
    /**
     * CREDENTIAL_MAX_STALENESS_MS: while Postgres is unreachable, a credential verified at most this
     * long ago is still accepted from the cache (revocations still apply through pub/sub); 0 = never.
     */
    credentialMaxStalenessMs: number;
    adminBootstrapKey: string | undefined;
    jwt: {
      secret: string | undefined;
      publicKey: string | undefined;
      algorithms: JwtAlgorithm[];
      audience: string;
      issuer: string | undefined;
    };
  };
  encryption: {
    keys: EncryptionKey[];
    /** true when the keys were generated into DATA_DIR (development only). */
    generated: boolean;
  };
  /** RateLimit: default policies and failure behaviour (docs/rate-limit.md). */
  rateLimit: RateLimitConfig;
  upstream: {
    allowPrivate: boolean;
  };
  queue: {
    fullPolicy: QueueFullPolicy;
    /** Waiting requests per provider (all instances) before QUEUE_FULL_POLICY applies. */
    maxPerProvider: number;
    /** How long a request may wait for capacity, per priority (low the shortest). */
    timeoutMs: { urgent: number; high: number; normal: number; low: number };
    /** A request waiting this long moves up one priority level; 0 = no aging. */
    agingMs: number;
  };
  /** KeyPool: upstream keys, cooldowns, leases (docs/key-pool.md). */
  keyPool: KeyPoolConfig;
  /** Adaptive: learned concurrency per upstream key (docs/adaptive.md). */
  adaptive: AdaptiveConfig;
  /** Adaptive: the per-provider retreat token bucket (docs/adaptive.md). */
  retreat: RetreatConfig;
  /** Routing: the circuit breaker per route target (docs/breaker.md). */
  breaker: BreakerConfig;
  /** Alerts: webhook deliveries (docs/alerts.md). */
  alerts: AlertsConfig;
  /** Spend budgets (docs/spend.md "Budgets"). */
  budgets: BudgetsConfig;
  /** The requests API's optional body capture (docs/requests.md). */
  requests: {
    /** BODY_CAPTURE_MAX_BYTES: each captured body (request, response) is cut to this many UTF-8 bytes. */
    bodyCaptureMaxBytes: number;
    /** BODY_CAPTURE_RETENTION_DAYS: captured bodies older than this are deleted (hourly job). */
    bodyCaptureRetentionDays: number;
  };
  shutdownTimeoutMs: number;
  /** Quiet time after which one full GC gives a burst's memory back (0 = never); src/app/idle-collector.ts. */
  memoryIdleGcMs: number;
  metricsToken: string | undefined;
  otlpEndpoint: string | undefined;
}

export interface KeyPoolConfig {
  /** PROVIDERS_FILE: YAML or JSON providers + keys applied idempotently at start. */
  providersFile: string | undefined;
  /** Cooldown after an upstream 429 that names no retry time. */
  cooldownDefaultSeconds: number;
  /** Upper bound for any upstream-announced cooldown. */
  cooldownMaxSeconds: number;
  /** How long an unreleased lease holds a concurrency slot (a dead instance frees its slots after this). */
  leaseTtlSeconds: number;
  /** Per-minute key usage is flushed to Postgres this often. */
  usageFlushMs: number;
  /** Rows re-encrypted per transaction by the start-up heal. */
  healBatchSize: number;
}

// ---- Adaptive (docs/adaptive.md) -------------------------------------------------------------

/** Learned concurrency per upstream key (AIMD). */
export interface AdaptiveConfig {
  /** ADAPTIVE_INITIAL_LIMIT: the limit of an adaptive key that has not learned anything yet. */
  initialLimit: number;
  /** ADAPTIVE_MIN_LIMIT / ADAPTIVE_MAX_LIMIT: bounds of a learned limit. */
  minLimit: number;
  maxLimit: number;
  /** ADAPTIVE_DECREASE_FACTOR: a concurrency 429 sets the limit to floor(in-flight × this). */
  decreaseFactor: number;
  /** ADAPTIVE_UNKNOWN_DECREASE_FACTOR: an unclassified 429 sets the limit to floor(limit × this) (at least −1). */
  unknownDecreaseFactor: number;
  /** ADAPTIVE_HOLD_MS: no increase (and no further unknown-429 decrease) for this long after a decrease. */
  holdMs: number;
  /**
   * ADAPTIVE_SLOW_START_FACTOR: while a key was never pushed back (no concurrency or unknown 429
   * since its learning began or was reset), high utilisation multiplies its limit by this (at least
   * +1) instead of adding one. 1 = no slow start.
   */
  slowStartFactor: number;
  /** ADAPTIVE_UTILISATION_THRESHOLD: a sample is "high" when in-flight ≥ this share of the limit. */
  utilisationThreshold: number;
  /** ADAPTIVE_HIGH_UTILISATION_SHARE: +1 when at least this share of the recent samples are high. */
  highUtilisationShare: number;
  /** ADAPTIVE_SAMPLE_SIZE: how many recent successful answers a decision looks at. */
  sampleSize: number;
  /** ADAPTIVE_PROBE_INTERVAL_MS: after this long without a concurrency 429 (and since the last probe), +1 past the known boundary. */
  probeIntervalMs: number;
  /** ADAPTIVE_LONG_RETRY_AFTER_MS: a 429 whose Retry-After is at least this long, below the limit, is a rate (RPM) 429. */
  longRetryAfterMs: number;
  /** ADAPTIVE_FLUSH_MS: learned state is written to Postgres this often (batched). */
  flushMs: number;
}

/** The provider-wide retreat token bucket (NORMAL → RETREAT → RECOVER → NORMAL). */
export interface RetreatConfig {
  /** RETREAT_ENABLED: false keeps the plain bucket at the provider's rpm/burst. */
  enabled: boolean;
  /** RETREAT_WINDOW_MS: the sliding window of upstream answers the 429 rate is computed over. */
  windowMs: number;
  /** RETREAT_MIN_SAMPLES: answers in the window before the rate may trigger a retreat. */
  minSamples: number;
  /** RETREAT_ENTER_RATE: 429 rate above this → RETREAT (or a deeper cut while retreating). */
  enterRate: number;
  /** RETREAT_EXIT_RATE: 429 rate below this for RETREAT_HOLD_MS → RECOVER. */
  exitRate: number;
  /** RETREAT_FACTOR: a cut multiplies the effective rate by at most this. */
  factor: number;
  /** RETREAT_MIN_FACTOR: the effective rate never goes below base × this. */
  minFactor: number;
  holdMs: number;
  /** RETREAT_RECOVER_STEP: RECOVER raises the factor by this every RETREAT_RECOVER_STEP_MS. */
  recoverStep: number;
  recoverStepMs: number;
}

// ---- Routing: circuit breaker (docs/breaker.md) ------------------------------------------------

/** The circuit breaker per route target (provider + model); shared by every instance. */
export interface BreakerConfig {
  /** BREAKER_CONSECUTIVE_FAILURES: this many failures in a row open the breaker. */
  consecutiveFailures: number;
  /** BREAKER_FAILURE_RATE: failures / requests in the window above this open it (0-1). */
  failureRate: number;
  /** BREAKER_MIN_REQUESTS: requests in the window before the rate counts. */
  minRequests: number;
  /** BREAKER_WINDOW_MS: the (fixed) window the rate is counted over. */
  windowMs: number;
  /** BREAKER_OPEN_MS: how long it stays open before one half-open probe may go. */
  openMs: number;
}

function loadBreakerConfig(r: EnvReader): BreakerConfig {
  return {
    consecutiveFailures: r.int('BREAKER_CONSECUTIVE_FAILURES', 5, 1, 1_000_000),
    failureRate: readFraction(r, 'BREAKER_FAILURE_RATE', 0.5, 0.01, 1),
    minRequests: r.int('BREAKER_MIN_REQUESTS', 20, 1, 1_000_000),
    windowMs: r.int('BREAKER_WINDOW_MS', 30_000, 1000, 3_600_000),
    openMs: r.int('BREAKER_OPEN_MS', 30_000, 100, 3_600_000),
  };
}

// ---- Alerts: webhooks (docs/alerts.md) ---------------------------------------------------------

/** Webhook deliveries: retries, timeouts and how often due deliveries are looked for. */
export interface AlertsConfig {
  /** WEBHOOK_MAX_ATTEMPTS: attempts per delivery (the first included) before it is marked failed. */
  maxAttempts: number;
  /** WEBHOOK_TIMEOUT_MS: one attempt (connect + answer) may take this long. */
  timeoutMs: number;
  /** WEBHOOK_POLL_INTERVAL_MS: each instance looks for due deliveries this often. */
  pollIntervalMs: number;
}

function loadAlertsConfig(r: EnvReader): AlertsConfig {
  return {
    maxAttempts: r.int('WEBHOOK_MAX_ATTEMPTS', 6, 1, 20),
    timeoutMs: r.int('WEBHOOK_TIMEOUT_MS', 5000, 100, 60_000),
    pollIntervalMs: r.int('WEBHOOK_POLL_INTERVAL_MS', 1000, 50, 60_000),
  };
}

// ---- Spend budgets (docs/spend.md "Budgets") --------------------------------------------------

export interface BudgetsConfig {
  /**
   * BUDGET_DEFAULT_MAX_TOKENS: the completion tokens a request without max_tokens /
   * max_completion_tokens is reserved for (its worst case), 1..1 000 000.
   */
  defaultMaxTokens: number;
  /**
   * BUDGET_RESERVATION_TTL_MS: how long a request's budget reservation lives without a renewal
   * (1 000..86 400 000, default 60 000). The instance serving the request renews it every third of
   * this while the request lives (queued, streaming: however long); a reservation whose instance
   * died is given back at most this long after its last renewal.
   */
  reservationTtlMs: number;
}

function loadBudgetsConfig(r: EnvReader): BudgetsConfig {
  return {
    defaultMaxTokens: r.int('BUDGET_DEFAULT_MAX_TOKENS', 4096, 1, 1_000_000),
    reservationTtlMs: r.int('BUDGET_RESERVATION_TTL_MS', 60_000, 1000, 86_400_000),
  };
}

/** A decimal in [min, max] ("0.85"); one problem line when it is not. */
function readFraction(r: EnvReader, name: string, def: number, min: number, max: number): number {
  const value = r.raw(name);
  if (value === undefined) return def;
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || n < min || n > max) {
    r.problems.push(`${name} must be a number ${min}-${max}, got ${JSON.stringify(value)}`);
    return def;
  }
  return n;
}

function loadAdaptiveConfig(r: EnvReader): AdaptiveConfig {
  const c: AdaptiveConfig = {
    initialLimit: r.int('ADAPTIVE_INITIAL_LIMIT', 8, 1, 10_000),
    minLimit: r.int('ADAPTIVE_MIN_LIMIT', 1, 1, 10_000),
    maxLimit: r.int('ADAPTIVE_MAX_LIMIT', 100, 1, 10_000),
    decreaseFactor: readFraction(r, 'ADAPTIVE_DECREASE_FACTOR', 0.85, 0.1, 0.99),
    unknownDecreaseFactor: readFraction(r, 'ADAPTIVE_UNKNOWN_DECREASE_FACTOR', 0.9, 0.1, 0.99),
    holdMs: r.int('ADAPTIVE_HOLD_MS', 15_000, 0, 3_600_000),
    slowStartFactor: readFraction(r, 'ADAPTIVE_SLOW_START_FACTOR', 2, 1, 10),
    utilisationThreshold: readFraction(r, 'ADAPTIVE_UTILISATION_THRESHOLD', 0.75, 0.1, 1),
    highUtilisationShare: readFraction(r, 'ADAPTIVE_HIGH_UTILISATION_SHARE', 0.6, 0.1, 1),
    sampleSize: r.int('ADAPTIVE_SAMPLE_SIZE', 20, 1, 10_000),
    probeIntervalMs: r.int('ADAPTIVE_PROBE_INTERVAL_MS', 300_000, 1000, 86_400_000),
    longRetryAfterMs: r.int('ADAPTIVE_LONG_RETRY_AFTER_MS', 10_000, 1000, 3_600_000),
    flushMs: r.int('ADAPTIVE_FLUSH_MS', 2000, 100, 600_000),
  };
  if (c.minLimit > c.maxLimit)
    r.problems.push(
      `ADAPTIVE_MIN_LIMIT must be at most ADAPTIVE_MAX_LIMIT (${c.maxLimit}), got ${c.minLimit}`,
    );
  else if (c.initialLimit < c.minLimit || c.initialLimit > c.maxLimit)
    r.problems.push(
      `ADAPTIVE_INITIAL_LIMIT must be between ADAPTIVE_MIN_LIMIT and ADAPTIVE_MAX_LIMIT (${c.minLimit}-${c.maxLimit}), got ${c.initialLimit}`,
    );
  return c;
}

function loadRetreatConfig(r: EnvReader): RetreatConfig {
  const c: RetreatConfig = {
    enabled: r.bool('RETREAT_ENABLED', true),
    windowMs: r.int('RETREAT_WINDOW_MS', 60_000, 100, 3_600_000),
    minSamples: r.int('RETREAT_MIN_SAMPLES', 20, 1, 1_000_000),
    enterRate: readFraction(r, 'RETREAT_ENTER_RATE', 0.1, 0.001, 1),
    exitRate: readFraction(r, 'RETREAT_EXIT_RATE', 0.02, 0, 1),
    factor: readFraction(r, 'RETREAT_FACTOR', 0.5, 0.01, 0.99),
    minFactor: readFraction(r, 'RETREAT_MIN_FACTOR', 0.05, 0.001, 0.99),
    holdMs: r.int('RETREAT_HOLD_MS', 30_000, 0, 3_600_000),
    recoverStep: readFraction(r, 'RETREAT_RECOVER_STEP', 0.1, 0.01, 1),
    recoverStepMs: r.int('RETREAT_RECOVER_STEP_MS', 10_000, 10, 3_600_000),
  };
  if (c.exitRate >= c.enterRate)
    r.problems.push(`RETREAT_EXIT_RATE must be below RETREAT_ENTER_RATE (${c.enterRate}), got ${c.exitRate}`);
  if (c.minFactor > c.factor)
    r.problems.push(`RETREAT_MIN_FACTOR must be at most RETREAT_FACTOR (${c.factor}), got ${c.minFactor}`);
  return c;
}

export type RateLimitAlgorithm = 'sliding_window' | 'token_bucket';

export interface RateLimitConfig {
  /** RATE_LIMIT_FAILURE_MODE: what a decision does when Redis cannot answer in time. */
  failureMode: FailureMode;
  /** Requests per minute per API key (a key's own `rpm` overrides it). */
  keyRpm: number;
  /** Requests per minute per user, all of their keys and tokens together. */
  userRpm: number;
  /** Requests per minute per client IP (IPv6: per /64), authenticated or not. */
  ipRpm: number;
  /** Algorithm of the per-IP policy; key and user policies are exact sliding windows. */
  ipAlgorithm: RateLimitAlgorithm;
  /** Bucket capacity when the IP policy is a token bucket. */
  ipBurst: number;
  /** How long Redis may stay silent while a decision waits before the failure mode applies (RedisLiveness). */
  decisionTimeoutMs: number;
  /**
   * The same, for the decisions of non-relay routes (the admin and management API, /api/me, …):
   * their deadline and silence threshold, so they are not shed when Redis falls behind a relay flood.
   */
  adminDecisionTimeoutMs: number;
  /**
   * ADMISSION_GRANTS (`off` | `on`, default on): distributed mode on a single Redis takes client
   * and upstream-key capacity in blocks and admits from them locally (docs/scaling.md, "Local
   * admission grants"); `off` selects the exact admission, one Redis decision per request. Does
   * not apply on a Redis Cluster or embedded (every request takes the exact admission there).
   */
  admissionGrants: boolean;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const JWT_ALGORITHMS: JwtAlgorithm[] = [
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
];
export const API_KEY_PATTERN = /^fg_[A-Za-z0-9_-]{43}$/;

/** Reads one variable at a time and collects every problem, so a user fixes them all in one go. */
class EnvReader {
  readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  raw(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  private fail(name: string, expected: string, got: string): undefined {
    this.problems.push(`${name} must be ${expected}, got ${JSON.stringify(got)}`);
    return undefined;
  }

  string(name: string): string | undefined {
    return this.raw(name);
  }

  int(name: string, def: number, min: number, max: number): number {
    const value = this.raw(name);
    if (value === undefined) return def;
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
      this.fail(name, `an integer ${min}-${max}`, value);
      return def;
    }
    return Number(value);
  }

  bool(name: string, def: boolean): boolean {
    const value = this.raw(name);
    if (value === undefined) return def;
    const lower = value.toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(lower)) return true;
    if (['false', '0', 'no', 'off'].includes(lower)) return false;
    this.fail(name, 'one of true, false, 1, 0, yes, no, on, off', value);
    return def;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], def: T, caseInsensitive = true): T {
    const value = this.raw(name);
    if (value === undefined) return def;
    const normalised = caseInsensitive ? value.toLowerCase() : value;
    const found = allowed.find((a) => (caseInsensitive ? a.toLowerCase() : a) === normalised);
    if (!found) {
      this.fail(name, `one of ${allowed.join(', ')}`, value);
      return def;
    }
    return found;
  }

  url(name: string, protocols: string[]): string | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    try {
      const parsed = new URL(value);
      if (!protocols.includes(parsed.protocol)) {
        return this.fail(
          name,
          `a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`,
          redactUrl(value),
        );
      }
      return value;
    } catch {
      return this.fail(name, 'a valid URL', redactUrl(value));
    }
  }
}

/** Never echo a password embedded in a connection URL back in an error message. */
export function redactUrl(value: string): string {
  return value.replace(/\/\/([^:/@]+):([^@/]+)@/, '//$1:***@');
}

function parseEncryptionKeys(reader: EnvReader, value: string): EncryptionKey[] {
  const keys: EncryptionKey[] = [];
  const seen = new Set<string>();
  for (const part of value
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const idx = part.indexOf(':');
    const id = idx > 0 ? part.slice(0, idx) : '';
    const material = idx > 0 ? part.slice(idx + 1) : '';
    const key = Buffer.from(material, 'base64');
    if (
      !/^[A-Za-z0-9_.-]{1,32}$/.test(id) ||
      key.length !== 32 ||
      key.toString('base64') !== normaliseB64(material)
    ) {
      reader.problems.push(
        `ENCRYPTION_KEYS must be a comma list of id:base64(32 bytes) (id 1-32 of A-Z a-z 0-9 _ . -), got an entry with id ${JSON.stringify(id || part.slice(0, 8))} that is not`,
      );
      return [];
    }
    if (seen.has(id)) {
      reader.problems.push(`ENCRYPTION_KEYS must use each id once, got ${JSON.stringify(id)} twice`);
      return [];
    }
    seen.add(id);
    keys.push({ id, key });
  }
  if (keys.length === 0)
    reader.problems.push('ENCRYPTION_KEYS must hold at least one id:base64(32 bytes) entry, got none');
  return keys;
}

function normaliseB64(material: string): string {
  // Accept base64url and unpadded input; compare against canonical base64 of the decoded bytes.
  const std = material.replace(/-/g, '+').replace(/_/g, '/');
  return std + '='.repeat((4 - (std.length % 4)) % 4);
}

export function isValidCidr(value: string): boolean {
  const [addr, bits, extra] = value.split('/');
  if (extra !== undefined || !addr) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d+$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

/**
 * REDIS_CLUSTER_NODES: `host:port,host:port,…` (any reachable subset of the cluster's nodes; ioredis
 * discovers the rest). IPv6 hosts in brackets: `[::1]:7000`.
 */
function parseClusterNodes(r: EnvReader): RedisNode[] | undefined {
  const raw = r.raw('REDIS_CLUSTER_NODES');
  if (raw === undefined) return undefined;
  const form = 'a comma list of host:port (port 1-65535; IPv6 as [addr]:port)';
  const entries = raw.split(',').map((e) => e.trim());
  const nodes: RedisNode[] = [];
  for (const entry of entries) {
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9][A-Za-z0-9.-]*)):(\d{1,5})$/.exec(entry);
    const port = m ? Number(m[3]) : 0;
    const host = m ? (m[1] ?? m[2]!) : '';
    if (!m || port < 1 || port > 65535 || (m[1] !== undefined && isIP(host) !== 6)) {
      r.problems.push(`REDIS_CLUSTER_NODES must be ${form}, got an entry ${JSON.stringify(entry)}`);
      return undefined;
    }
    nodes.push({ host, port });
  }
  return nodes;
}

function loadKeyPoolConfig(r: EnvReader): KeyPoolConfig {
  const keyPool: KeyPoolConfig = {
    providersFile: r.string('PROVIDERS_FILE'),
    cooldownDefaultSeconds: r.int('KEY_COOLDOWN_DEFAULT_SECONDS', 60, 1, 86400),
    cooldownMaxSeconds: r.int('KEY_COOLDOWN_MAX_SECONDS', 300, 1, 86400),
    leaseTtlSeconds: r.int('KEY_LEASE_TTL_SECONDS', 30, 5, 3600),
    usageFlushMs: r.int('KEY_USAGE_FLUSH_MS', 2000, 100, 60000),
    healBatchSize: r.int('KEY_HEAL_BATCH_SIZE', 100, 1, 10000),
  };
  if (keyPool.cooldownDefaultSeconds > keyPool.cooldownMaxSeconds) {
    r.problems.push(
      `KEY_COOLDOWN_DEFAULT_SECONDS must be at most KEY_COOLDOWN_MAX_SECONDS (${keyPool.cooldownMaxSeconds}), got ${keyPool.cooldownDefaultSeconds}`,
    );
  }
  return keyPool;
}

function loadRateLimitConfig(r: EnvReader): RateLimitConfig {
  const ipRpm = r.int('RATE_LIMIT_IP_RPM', 1000, 1, 1_000_000);
  const decisionTimeoutMs = r.int('RATE_LIMIT_TIMEOUT_MS', 100, 10, 5000);
  // unset: 2000, or RATE_LIMIT_TIMEOUT_MS when that is longer (never shorter than the relay's)
  const adminDecisionTimeoutMs = r.int(
    'RATE_LIMIT_ADMIN_TIMEOUT_MS',
    Math.max(2000, decisionTimeoutMs),
    10,
    5000,
  );
  if (adminDecisionTimeoutMs < decisionTimeoutMs) {
    r.problems.push(
      `RATE_LIMIT_ADMIN_TIMEOUT_MS must be at least RATE_LIMIT_TIMEOUT_MS (${decisionTimeoutMs}), got ${adminDecisionTimeoutMs}`,
    );
  }
  return {
    failureMode: r.oneOf<FailureMode>('RATE_LIMIT_FAILURE_MODE', ['open', 'closed'], 'open'),
    keyRpm: r.int('RATE_LIMIT_KEY_RPM', 60, 1, 1_000_000),
    userRpm: r.int('RATE_LIMIT_USER_RPM', 600, 1, 1_000_000),
    ipRpm,
    ipAlgorithm: r.oneOf<RateLimitAlgorithm>(
      'RATE_LIMIT_IP_ALGORITHM',
      ['sliding_window', 'token_bucket'],
      'sliding_window',
    ),
    ipBurst: r.int('RATE_LIMIT_IP_BURST', Math.max(1, Math.ceil(ipRpm / 6)), 1, 1_000_000),
    decisionTimeoutMs,
    adminDecisionTimeoutMs,
    admissionGrants: r.oneOf<'off' | 'on'>('ADMISSION_GRANTS', ['off', 'on'], 'on') === 'on',
  };
}

export interface LoadConfigOptions {
  /** Secrets generated for development (see dev-secrets.ts); consulted only when the env lacks them. */
  generatedEncryptionKeys?: string;
}

export function loadConfig(env: Env, options: LoadConfigOptions = {}): AppConfig {
  const r = new EnvReader(env);
  const nodeEnv = r.oneOf<NodeEnv>('NODE_ENV', ['development', 'production', 'test'], 'development');
  const isProduction = nodeEnv === 'production';

  const port = r.int('PORT', 3000, 1, 65535);
  const host = r.string('HOST') ?? '0.0.0.0';
  if (isIP(host) === 0 && host !== 'localhost')
    r.problems.push(`HOST must be an IP address or localhost, got ${JSON.stringify(host)}`);

  const databaseUrl = r.url('DATABASE_URL', ['postgres:', 'postgresql:']);
  const redisUrl = r.url('REDIS_URL', ['redis:', 'rediss:']);
  const redisNodes = parseClusterNodes(r);
  if (r.raw('REDIS_URL') && r.raw('REDIS_CLUSTER_NODES')) {
    r.problems.push(
      'REDIS_URL and REDIS_CLUSTER_NODES must not both be set (one Redis, or one Redis Cluster), got both',
    );
  }
  for (const name of ['REDIS_URL', 'REDIS_CLUSTER_NODES']) {
    if (r.raw(name) && !r.raw('DATABASE_URL')) {
      r.problems.push(
        `DATABASE_URL must be set when ${name} is (distributed mode shares one Postgres between instances), got nothing`,
      );
    }
  }
  const dataDir = r.string('DATA_DIR') ?? './.data';

  const logLevel = r.oneOf<LogLevel>('LOG_LEVEL', LOG_LEVELS, 'info');
  const logFormat = r.oneOf<LogFormat>(
    'LOG_FORMAT',
    ['pretty', 'json'],
    nodeEnv === 'development' ? 'pretty' : 'json',
  );

  const adminBootstrapKey = r.string('ADMIN_BOOTSTRAP_KEY');
  if (adminBootstrapKey !== undefined && !API_KEY_PATTERN.test(adminBootstrapKey)) {
    r.problems.push(
      'ADMIN_BOOTSTRAP_KEY must be fg_ followed by 43 base64url characters, got a value that is not',
    );
  }

  const jwtSecret = r.string('JWT_SECRET');
  const jwtPublicKey = r.string('JWT_PUBLIC_KEY')?.replace(/\\n/g, '\n');
  if (jwtSecret && jwtPublicKey)
    r.problems.push('JWT_SECRET and JWT_PUBLIC_KEY must not both be set, got both');
  if (jwtPublicKey && !/-----BEGIN (RSA |EC )?PUBLIC KEY-----/.test(jwtPublicKey)) {
    r.problems.push(
      'JWT_PUBLIC_KEY must be a PEM public key (-----BEGIN PUBLIC KEY-----), got something else',
    );
  }
  const algorithmsRaw = r.string('JWT_ALGORITHMS');
  let algorithms: JwtAlgorithm[] = jwtPublicKey ? ['RS256'] : ['HS256'];
  if (algorithmsRaw) {
    const list = algorithmsRaw
      .split(',')
      .map((a) => a.trim())
      .filter(Boolean);
    const bad = list.filter((a) => !JWT_ALGORITHMS.includes(a as JwtAlgorithm));
    if (bad.length > 0 || list.length === 0) {
      r.problems.push(
        `JWT_ALGORITHMS must be a comma list of ${JWT_ALGORITHMS.join(', ')}, got ${JSON.stringify(algorithmsRaw)}`,
      );
    } else {
      algorithms = list as JwtAlgorithm[];
    }
  }
  const hmac = algorithms.filter((a) => a.startsWith('HS'));
  const asymmetric = algorithms.filter((a) => !a.startsWith('HS'));
  if (jwtSecret && asymmetric.length > 0) {
    r.problems.push(
      `JWT_ALGORITHMS must list only HS* algorithms with JWT_SECRET, got ${asymmetric.join(', ')}`,
    );
  }
  if (jwtPublicKey && hmac.length > 0) {
    // A public key used as an HMAC secret is the classic algorithm-confusion attack.
    r.problems.push(
      `JWT_ALGORITHMS must not list HS* algorithms with JWT_PUBLIC_KEY, got ${hmac.join(', ')}`,
    );
  }
  if (jwtSecret && isProduction && jwtSecret.length < 32) {
    r.problems.push(`JWT_SECRET must be at least 32 characters in production, got ${jwtSecret.length}`);
  }

  let encryptionKeys: EncryptionKey[] = [];
  let generated = false;
  const encryptionRaw = r.string('ENCRYPTION_KEYS');
  if (encryptionRaw) {
    encryptionKeys = parseEncryptionKeys(r, encryptionRaw);
  } else if (isProduction) {
    r.problems.push(
      'ENCRYPTION_KEYS must be set in production (comma list of id:base64(32 bytes)), got nothing',
    );
  } else if (options.generatedEncryptionKeys) {
    encryptionKeys = parseEncryptionKeys(r, options.generatedEncryptionKeys);
    generated = true;
  }

  const trustedRaw = r.string('TRUSTED_PROXIES');
  const trustedProxies = trustedRaw
    ? trustedRaw
        .split(',')
        .map((c) => c.trim())
        .filter(Boolean)
    : [];
  const badCidrs = trustedProxies.filter((c) => !isValidCidr(c));
  if (badCidrs.length > 0) {
    r.problems.push(
      `TRUSTED_PROXIES must be a comma list of IP addresses or CIDRs, got ${JSON.stringify(badCidrs.join(','))}`,
    );
  }

  const config: AppConfig = {
    env: nodeEnv,
    isProduction,
    mode: redisUrl || redisNodes ? 'distributed' : 'embedded',
    http: {
      host,
      port,
      bodyLimitBytes: r.int('BODY_LIMIT_BYTES', 4 * 1024 * 1024, 1024, 100 * 1024 * 1024),
      bodyReadTimeoutMs: r.int('BODY_READ_TIMEOUT_MS', 30_000, 500, 600_000),
      trustedProxies,
    },
    database: {
      url: databaseUrl,
      dataDir,
      inMemory: dataDir === ':memory:',
      migrationsRun: r.bool('MIGRATIONS_RUN', true),
      poolSize: r.int('DATABASE_POOL_SIZE', 10, 1, 200),
      writeBufferMaxEntries: r.int('WRITE_BUFFER_MAX_ENTRIES', 20_000, 100, 10_000_000),
    },
    redis: {
      url: redisUrl,
      nodes: redisNodes,
      prefix: r.string('REDIS_PREFIX') ?? 'floodgate',
    },
    log: {
      level: logLevel,
      format: logFormat,
      requestContext: r.bool('LOG_REQUEST_CONTEXT', false),
    },
    auth: {
      credentialMaxStalenessMs: r.int('CREDENTIAL_MAX_STALENESS_MS', 300_000, 0, 86_400_000),
      adminBootstrapKey,
      jwt: {
        secret: jwtSecret,
        publicKey: jwtPublicKey,
        algorithms,
        audience: r.string('JWT_AUDIENCE') ?? 'floodgate',
        issuer: r.string('JWT_ISSUER'),
      },
    },
    encryption: { keys: encryptionKeys, generated },
    rateLimit: loadRateLimitConfig(r),
    upstream: {
      allowPrivate: r.bool('ALLOW_PRIVATE_UPSTREAMS', !isProduction),
    },
    queue: {
      fullPolicy: r.oneOf<QueueFullPolicy>('QUEUE_FULL_POLICY', ['reject', 'passthrough'], 'reject'),
      maxPerProvider: r.int('QUEUE_MAX_PER_PROVIDER', 1000, 1, 1_000_000),
      timeoutMs: {
        urgent: r.int('QUEUE_TIMEOUT_URGENT_MS', 120_000, 100, 3_600_000),
        high: r.int('QUEUE_TIMEOUT_HIGH_MS', 60_000, 100, 3_600_000),
        normal: r.int('QUEUE_TIMEOUT_NORMAL_MS', 30_000, 100, 3_600_000),
        low: r.int('QUEUE_TIMEOUT_LOW_MS', 15_000, 100, 3_600_000),
      },
      agingMs: r.int('QUEUE_AGING_MS', 0, 0, 3_600_000),
    },
    keyPool: loadKeyPoolConfig(r),
    adaptive: loadAdaptiveConfig(r),
    retreat: loadRetreatConfig(r),
    breaker: loadBreakerConfig(r),
    alerts: loadAlertsConfig(r),
    budgets: loadBudgetsConfig(r),
    requests: {
      bodyCaptureMaxBytes: r.int('BODY_CAPTURE_MAX_BYTES', 32_768, 256, 10 * 1024 * 1024),
      bodyCaptureRetentionDays: r.int('BODY_CAPTURE_RETENTION_DAYS', 7, 1, 3650),
    },
    shutdownTimeoutMs: r.int('SHUTDOWN_TIMEOUT_MS', 30000, 0, 3600000),
    memoryIdleGcMs: r.int('MEMORY_IDLE_GC_MS', 5000, 0, 3600000),
    metricsToken: r.string('METRICS_TOKEN'),
    otlpEndpoint: r.url('OTEL_EXPORTER_OTLP_ENDPOINT', ['http:', 'https:']),
  };
  if (r.raw('REDIS_PREFIX') && !/^[A-Za-z0-9_.:-]{1,64}$/.test(config.redis.prefix)) {
    r.problems.push(
      `REDIS_PREFIX must be 1-64 of A-Z a-z 0-9 _ . : -, got ${JSON.stringify(config.redis.prefix)}`,
    );
  }

  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return config;
}
