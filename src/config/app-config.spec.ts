import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './app-config.js';

const KEY = `k1:${Buffer.alloc(32, 1).toString('base64')}`;

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('loadConfig', () => {
  it('gives the documented defaults with no env (embedded mode)', () => {
    const c = loadConfig({});
    expect(c.mode).toBe('embedded');
    expect(c.http).toMatchObject({ port: 3000, host: '0.0.0.0' });
    expect(c.env).toBe('development');
    expect(c.log).toEqual({ level: 'info', format: 'pretty', requestContext: false });
    expect(c.database).toMatchObject({ url: undefined, dataDir: './.data', migrationsRun: true });
    expect(c.auth.jwt).toMatchObject({ algorithms: ['HS256'], audience: 'floodgate' });
    expect(c.rateLimit.failureMode).toBe('open');
    expect(c.upstream.allowPrivate).toBe(true);
    expect(c.queue.fullPolicy).toBe('reject');
    expect(c.shutdownTimeoutMs).toBe(30000);
  });

  it('names the variable, the bad value and what is allowed', () => {
    expect(problems({ PORT: 'abc' })).toEqual(['PORT must be an integer 1-65535, got "abc"']);
    expect(problems({ PORT: '70000' })).toEqual(['PORT must be an integer 1-65535, got "70000"']);
    expect(problems({ RATE_LIMIT_FAILURE_MODE: 'maybe' })).toEqual([
      'RATE_LIMIT_FAILURE_MODE must be one of open, closed, got "maybe"',
    ]);
    expect(problems({ QUEUE_FULL_POLICY: 'drop' })[0]).toMatch(
      /^QUEUE_FULL_POLICY must be one of reject, passthrough/,
    );
    expect(loadConfig({ LOG_REQUEST_CONTEXT: 'true' }).log.requestContext).toBe(true);
    expect(problems({ LOG_LEVEL: 'loud' })[0]).toMatch(/^LOG_LEVEL must be one of fatal, error, warn/);
    expect(problems({ ALLOW_PRIVATE_UPSTREAMS: 'sure' })[0]).toMatch(
      /^ALLOW_PRIVATE_UPSTREAMS must be one of true, false/,
    );
  });

  it('BODY_READ_TIMEOUT_MS: default 30 s, an integer 500-600000', () => {
    expect(loadConfig({}).http.bodyReadTimeoutMs).toBe(30_000);
    expect(loadConfig({ BODY_READ_TIMEOUT_MS: '1500' }).http.bodyReadTimeoutMs).toBe(1500);
    expect(problems({ BODY_READ_TIMEOUT_MS: '0' })).toEqual([
      'BODY_READ_TIMEOUT_MS must be an integer 500-600000, got "0"',
    ]);
    expect(problems({ BODY_READ_TIMEOUT_MS: '5s' })).toHaveLength(1);
  });

  it('reports every problem at once', () => {
    expect(problems({ PORT: 'x', SHUTDOWN_TIMEOUT_MS: '-1', NODE_ENV: 'staging' })).toHaveLength(3);
  });

  it('production refuses to start without ENCRYPTION_KEYS', () => {
    expect(problems({ NODE_ENV: 'production' })).toContain(
      'ENCRYPTION_KEYS must be set in production (comma list of id:base64(32 bytes)), got nothing',
    );
    expect(loadConfig({ NODE_ENV: 'production', ENCRYPTION_KEYS: KEY }).isProduction).toBe(true);
  });

  it('production refuses an HS* JWT secret shorter than 32 characters', () => {
    expect(problems({ NODE_ENV: 'production', ENCRYPTION_KEYS: KEY, JWT_SECRET: 'short' })).toEqual([
      'JWT_SECRET must be at least 32 characters in production, got 5',
    ]);
    expect(problems({ NODE_ENV: 'production', ENCRYPTION_KEYS: KEY, JWT_SECRET: 'x'.repeat(32) })).toEqual(
      [],
    );
    // development accepts a short secret
    expect(problems({ JWT_SECRET: 'short' })).toEqual([]);
  });

  it('never mixes HMAC algorithms with a public key (algorithm confusion)', () => {
    const pem = '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----';
    expect(loadConfig({ JWT_PUBLIC_KEY: pem }).auth.jwt.algorithms).toEqual(['RS256']);
    expect(problems({ JWT_PUBLIC_KEY: pem, JWT_ALGORITHMS: 'RS256,HS256' })).toEqual([
      'JWT_ALGORITHMS must not list HS* algorithms with JWT_PUBLIC_KEY, got HS256',
    ]);
    expect(problems({ JWT_SECRET: 's', JWT_ALGORITHMS: 'RS256' })[0]).toMatch(/only HS\* algorithms/);
    expect(problems({ JWT_ALGORITHMS: 'none' })[0]).toMatch(/^JWT_ALGORITHMS must be a comma list of HS256/);
  });

  it('validates ENCRYPTION_KEYS entries without echoing key material', () => {
    const bad = problems({ ENCRYPTION_KEYS: 'k1:dG9vc2hvcnQ=' });
    expect(bad).toHaveLength(1);
    expect(bad[0]).toMatch(/^ENCRYPTION_KEYS must be a comma list of id:base64\(32 bytes\)/);
    expect(bad[0]).not.toContain('dG9vc2hvcnQ');
    const two = `${KEY},k2:${Buffer.alloc(32, 2).toString('base64')}`;
    expect(loadConfig({ ENCRYPTION_KEYS: two }).encryption.keys.map((k) => k.id)).toEqual(['k1', 'k2']);
    expect(problems({ ENCRYPTION_KEYS: `${KEY},${KEY}` })[0]).toMatch(/each id once/);
  });

  it('uses generated development keys only when ENCRYPTION_KEYS is absent', () => {
    const c = loadConfig({}, { generatedEncryptionKeys: KEY });
    expect(c.encryption).toMatchObject({ generated: true });
    expect(c.encryption.keys[0]!.id).toBe('k1');
  });

  it('distributed mode needs both URLs, and never echoes a password', () => {
    expect(loadConfig({ DATABASE_URL: 'postgres://u:p@h/db', REDIS_URL: 'redis://h:6379' }).mode).toBe(
      'distributed',
    );
    expect(loadConfig({ DATABASE_URL: 'postgres://u:p@h/db' }).mode).toBe('embedded');
    expect(problems({ REDIS_URL: 'redis://h:6379' })[0]).toMatch(
      /^DATABASE_URL must be set when REDIS_URL is/,
    );
    const p = problems({ DATABASE_URL: 'mysql://user:hunter2@h/db' });
    expect(p[0]).toMatch(/^DATABASE_URL must be a URL starting with postgres:\/\/ or postgresql:\/\//);
    expect(p[0]).not.toContain('hunter2');
  });

  it('REDIS_CLUSTER_NODES selects distributed mode on a Redis Cluster, as the alternative to REDIS_URL', () => {
    const db = { DATABASE_URL: 'postgres://u:p@h/db' };
    const c = loadConfig({ ...db, REDIS_CLUSTER_NODES: '10.0.0.1:7000, redis-b.internal:7001,[::1]:7002' });
    expect(c.mode).toBe('distributed');
    expect(c.redis.url).toBeUndefined();
    expect(c.redis.nodes).toEqual([
      { host: '10.0.0.1', port: 7000 },
      { host: 'redis-b.internal', port: 7001 },
      { host: '::1', port: 7002 },
    ]);
    expect(loadConfig({ ...db, REDIS_URL: 'redis://h:6379' }).redis.nodes).toBeUndefined();
    expect(loadConfig({}).redis.nodes).toBeUndefined();
  });

  it('REDIS_CLUSTER_NODES: both variables, a bad entry or no DATABASE_URL is a start-up error', () => {
    const db = { DATABASE_URL: 'postgres://u:p@h/db' };
    expect(problems({ ...db, REDIS_URL: 'redis://h:6379', REDIS_CLUSTER_NODES: 'h:7000' })).toEqual([
      'REDIS_URL and REDIS_CLUSTER_NODES must not both be set (one Redis, or one Redis Cluster), got both',
    ]);
    for (const bad of [
      'h',
      'h:0',
      'h:65536',
      'redis://h:7000',
      'h:7000,,h:7001',
      'h:7000:1',
      '[zz]:7000',
      ' :7000',
      'h:port',
    ]) {
      const p = problems({ ...db, REDIS_CLUSTER_NODES: bad });
      expect(p, bad).toHaveLength(1);
      expect(p[0], bad).toMatch(/^REDIS_CLUSTER_NODES must be a comma list of host:port/);
    }
    expect(problems({ REDIS_CLUSTER_NODES: 'h:7000' })[0]).toMatch(
      /^DATABASE_URL must be set when REDIS_CLUSTER_NODES is/,
    );
  });

  it('validates ADMIN_BOOTSTRAP_KEY and TRUSTED_PROXIES', () => {
    expect(problems({ ADMIN_BOOTSTRAP_KEY: 'admin' })[0]).toMatch(
      /^ADMIN_BOOTSTRAP_KEY must be fg_ followed by 43/,
    );
    expect(problems({ ADMIN_BOOTSTRAP_KEY: `fg_${'a'.repeat(43)}` })).toEqual([]);
    expect(loadConfig({ TRUSTED_PROXIES: '10.0.0.0/8, 127.0.0.1,::1/128' }).http.trustedProxies).toHaveLength(
      3,
    );
    expect(problems({ TRUSTED_PROXIES: '10.0.0.0/33' })[0]).toMatch(/^TRUSTED_PROXIES must be a comma list/);
  });

  it('production defaults: JSON logs, private upstreams refused', () => {
    const c = loadConfig({ NODE_ENV: 'production', ENCRYPTION_KEYS: KEY });
    expect(c.log.format).toBe('json');
    expect(c.upstream.allowPrivate).toBe(false);
  });
  it('KeyPool: defaults, ranges and cooldown default ≤ max', () => {
    expect(loadConfig({}).keyPool).toEqual({
      providersFile: undefined,
      cooldownDefaultSeconds: 60,
      cooldownMaxSeconds: 300,
      leaseTtlSeconds: 30,
      usageFlushMs: 2000,
      healBatchSize: 100,
    });
    expect(loadConfig({ PROVIDERS_FILE: '/etc/floodgate/providers.yaml' }).keyPool.providersFile).toBe(
      '/etc/floodgate/providers.yaml',
    );
    expect(problems({ KEY_COOLDOWN_MAX_SECONDS: '0' })).toEqual([
      'KEY_COOLDOWN_MAX_SECONDS must be an integer 1-86400, got "0"',
    ]);
    expect(problems({ KEY_COOLDOWN_DEFAULT_SECONDS: '120', KEY_COOLDOWN_MAX_SECONDS: '90' })).toEqual([
      'KEY_COOLDOWN_DEFAULT_SECONDS must be at most KEY_COOLDOWN_MAX_SECONDS (90), got 120',
    ]);
    expect(problems({ KEY_HEAL_BATCH_SIZE: 'lots' })[0]).toMatch(
      /^KEY_HEAL_BATCH_SIZE must be an integer 1-10000/,
    );
  });
  it('RateLimit: default policies, ranges, algorithm and decision timeout', () => {
    expect(loadConfig({}).rateLimit).toEqual({
      failureMode: 'open',
      keyRpm: 60,
      userRpm: 600,
      ipRpm: 1000,
      ipAlgorithm: 'sliding_window',
      ipBurst: 167,
      decisionTimeoutMs: 100,
      adminDecisionTimeoutMs: 2000,
      admissionGrants: true,
    });
    const c = loadConfig({
      RATE_LIMIT_FAILURE_MODE: 'closed',
      RATE_LIMIT_KEY_RPM: '50',
      RATE_LIMIT_USER_RPM: '500',
      RATE_LIMIT_IP_RPM: '120',
      RATE_LIMIT_IP_ALGORITHM: 'token_bucket',
      RATE_LIMIT_TIMEOUT_MS: '80',
      ADMISSION_GRANTS: 'off',
    }).rateLimit;
    expect(c).toEqual({
      failureMode: 'closed',
      keyRpm: 50,
      userRpm: 500,
      ipRpm: 120,
      ipAlgorithm: 'token_bucket',
      ipBurst: 20,
      decisionTimeoutMs: 80,
      adminDecisionTimeoutMs: 2000,
      admissionGrants: false,
    });
    expect(loadConfig({ ADMISSION_GRANTS: 'on' }).rateLimit.admissionGrants).toBe(true);
    expect(problems({ ADMISSION_GRANTS: 'maybe' })[0]).toContain('ADMISSION_GRANTS');
    expect(loadConfig({ RATE_LIMIT_IP_BURST: '5' }).rateLimit.ipBurst).toBe(5);
    expect(problems({ RATE_LIMIT_KEY_RPM: '0' })).toEqual([
      'RATE_LIMIT_KEY_RPM must be an integer 1-1000000, got "0"',
    ]);
    expect(problems({ RATE_LIMIT_USER_RPM: 'many' })).toEqual([
      'RATE_LIMIT_USER_RPM must be an integer 1-1000000, got "many"',
    ]);
    expect(problems({ RATE_LIMIT_IP_ALGORITHM: 'leaky' })).toEqual([
      'RATE_LIMIT_IP_ALGORITHM must be one of sliding_window, token_bucket, got "leaky"',
    ]);
    expect(problems({ RATE_LIMIT_TIMEOUT_MS: '5' })).toEqual([
      'RATE_LIMIT_TIMEOUT_MS must be an integer 10-5000, got "5"',
    ]);
    // non-relay routes' deadline: its own variable, never shorter than the relay's
    expect(loadConfig({ RATE_LIMIT_ADMIN_TIMEOUT_MS: '500' }).rateLimit.adminDecisionTimeoutMs).toBe(500);
    expect(loadConfig({ RATE_LIMIT_TIMEOUT_MS: '3000' }).rateLimit.adminDecisionTimeoutMs).toBe(3000);
    expect(problems({ RATE_LIMIT_ADMIN_TIMEOUT_MS: 'soon' })).toEqual([
      'RATE_LIMIT_ADMIN_TIMEOUT_MS must be an integer 10-5000, got "soon"',
    ]);
    expect(problems({ RATE_LIMIT_ADMIN_TIMEOUT_MS: '9000' })).toEqual([
      'RATE_LIMIT_ADMIN_TIMEOUT_MS must be an integer 10-5000, got "9000"',
    ]);
    expect(problems({ RATE_LIMIT_TIMEOUT_MS: '300', RATE_LIMIT_ADMIN_TIMEOUT_MS: '200' })).toEqual([
      'RATE_LIMIT_ADMIN_TIMEOUT_MS must be at least RATE_LIMIT_TIMEOUT_MS (300), got 200',
    ]);
  });
  it('Adaptive and retreat: defaults, decimals, ranges and cross-checks', () => {
    const c = loadConfig({});
    expect(c.adaptive).toEqual({
      initialLimit: 8,
      minLimit: 1,
      maxLimit: 100,
      decreaseFactor: 0.85,
      unknownDecreaseFactor: 0.9,
      holdMs: 15_000,
      utilisationThreshold: 0.75,
      highUtilisationShare: 0.6,
      sampleSize: 20,
      probeIntervalMs: 300_000,
      longRetryAfterMs: 10_000,
      flushMs: 2000,
      slowStartFactor: 2,
    });
    expect(c.retreat).toEqual({
      enabled: true,
      windowMs: 60_000,
      minSamples: 20,
      enterRate: 0.1,
      exitRate: 0.02,
      factor: 0.5,
      minFactor: 0.05,
      holdMs: 30_000,
      recoverStep: 0.1,
      recoverStepMs: 10_000,
    });
    const custom = loadConfig({
      ADAPTIVE_INITIAL_LIMIT: '4',
      ADAPTIVE_DECREASE_FACTOR: '0.7',
      ADAPTIVE_HOLD_MS: '0',
      RETREAT_ENABLED: 'false',
      RETREAT_ENTER_RATE: '0.25',
      RETREAT_EXIT_RATE: '0',
      RETREAT_RECOVER_STEP: '1',
    });
    expect(custom.adaptive).toMatchObject({ initialLimit: 4, decreaseFactor: 0.7, holdMs: 0 });
    expect(custom.retreat).toMatchObject({ enabled: false, enterRate: 0.25, exitRate: 0, recoverStep: 1 });
    expect(problems({ ADAPTIVE_DECREASE_FACTOR: '1.5' })).toEqual([
      'ADAPTIVE_DECREASE_FACTOR must be a number 0.1-0.99, got "1.5"',
    ]);
    expect(problems({ ADAPTIVE_UTILISATION_THRESHOLD: 'high' })).toEqual([
      'ADAPTIVE_UTILISATION_THRESHOLD must be a number 0.1-1, got "high"',
    ]);
    expect(problems({ ADAPTIVE_SAMPLE_SIZE: '0' })).toEqual([
      'ADAPTIVE_SAMPLE_SIZE must be an integer 1-10000, got "0"',
    ]);
    expect(problems({ ADAPTIVE_INITIAL_LIMIT: '200' })).toEqual([
      'ADAPTIVE_INITIAL_LIMIT must be between ADAPTIVE_MIN_LIMIT and ADAPTIVE_MAX_LIMIT (1-100), got 200',
    ]);
    expect(
      problems({ ADAPTIVE_MIN_LIMIT: '10', ADAPTIVE_MAX_LIMIT: '5', ADAPTIVE_INITIAL_LIMIT: '7' }),
    ).toEqual(['ADAPTIVE_MIN_LIMIT must be at most ADAPTIVE_MAX_LIMIT (5), got 10']);
    expect(problems({ RETREAT_ENTER_RATE: '0.05', RETREAT_EXIT_RATE: '0.05' })).toEqual([
      'RETREAT_EXIT_RATE must be below RETREAT_ENTER_RATE (0.05), got 0.05',
    ]);
    expect(problems({ RETREAT_FACTOR: '0.1', RETREAT_MIN_FACTOR: '0.2' })).toEqual([
      'RETREAT_MIN_FACTOR must be at most RETREAT_FACTOR (0.1), got 0.2',
    ]);
    expect(problems({ RETREAT_ENABLED: 'maybe', RETREAT_WINDOW_MS: '5' })).toEqual([
      'RETREAT_ENABLED must be one of true, false, 1, 0, yes, no, on, off, got "maybe"',
      'RETREAT_WINDOW_MS must be an integer 100-3600000, got "5"',
    ]);
  });

  it('reads the circuit breaker section (BREAKER_*) with defaults and one problem line per bad value', () => {
    expect(loadConfig({}).breaker).toEqual({
      consecutiveFailures: 5,
      failureRate: 0.5,
      minRequests: 20,
      windowMs: 30_000,
      openMs: 30_000,
    });
    expect(
      loadConfig({
        BREAKER_CONSECUTIVE_FAILURES: '3',
        BREAKER_FAILURE_RATE: '0.25',
        BREAKER_MIN_REQUESTS: '10',
        BREAKER_WINDOW_MS: '60000',
        BREAKER_OPEN_MS: '500',
      }).breaker,
    ).toEqual({ consecutiveFailures: 3, failureRate: 0.25, minRequests: 10, windowMs: 60_000, openMs: 500 });
    expect(
      problems({
        BREAKER_CONSECUTIVE_FAILURES: '0',
        BREAKER_FAILURE_RATE: '1.5',
        BREAKER_MIN_REQUESTS: 'many',
        BREAKER_WINDOW_MS: '10',
        BREAKER_OPEN_MS: '-1',
      }),
    ).toEqual([
      'BREAKER_CONSECUTIVE_FAILURES must be an integer 1-1000000, got "0"',
      'BREAKER_FAILURE_RATE must be a number 0.01-1, got "1.5"',
      'BREAKER_MIN_REQUESTS must be an integer 1-1000000, got "many"',
      'BREAKER_WINDOW_MS must be an integer 1000-3600000, got "10"',
      'BREAKER_OPEN_MS must be an integer 100-3600000, got "-1"',
    ]);
  });

  it('reads the alerts section (WEBHOOK_*) with defaults and one problem line per bad value', () => {
    expect(loadConfig({}).alerts).toEqual({ maxAttempts: 6, timeoutMs: 5000, pollIntervalMs: 1000 });
    expect(
      loadConfig({ WEBHOOK_MAX_ATTEMPTS: '3', WEBHOOK_TIMEOUT_MS: '2000', WEBHOOK_POLL_INTERVAL_MS: '200' })
        .alerts,
    ).toEqual({ maxAttempts: 3, timeoutMs: 2000, pollIntervalMs: 200 });
    expect(
      problems({ WEBHOOK_MAX_ATTEMPTS: '0', WEBHOOK_TIMEOUT_MS: 'soon', WEBHOOK_POLL_INTERVAL_MS: '10' }),
    ).toEqual([
      'WEBHOOK_MAX_ATTEMPTS must be an integer 1-20, got "0"',
      'WEBHOOK_TIMEOUT_MS must be an integer 100-60000, got "soon"',
      'WEBHOOK_POLL_INTERVAL_MS must be an integer 50-60000, got "10"',
    ]);
  });
});
