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
    expect(c.log).toEqual({ level: 'info', format: 'pretty' });
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
    expect(problems({ QUEUE_FULL_POLICY: 'drop' })[0]).toMatch(/^QUEUE_FULL_POLICY must be one of reject, passthrough/);
    expect(problems({ LOG_LEVEL: 'loud' })[0]).toMatch(/^LOG_LEVEL must be one of fatal, error, warn/);
    expect(problems({ ALLOW_PRIVATE_UPSTREAMS: 'sure' })[0]).toMatch(/^ALLOW_PRIVATE_UPSTREAMS must be one of true, false/);
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
    expect(problems({ NODE_ENV: 'production', ENCRYPTION_KEYS: KEY, JWT_SECRET: 'x'.repeat(32) })).toEqual([]);
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
    expect(loadConfig({ DATABASE_URL: 'postgres://u:p@h/db', REDIS_URL: 'redis://h:6379' }).mode).toBe('distributed');
    expect(loadConfig({ DATABASE_URL: 'postgres://u:p@h/db' }).mode).toBe('embedded');
    expect(problems({ REDIS_URL: 'redis://h:6379' })[0]).toMatch(/^DATABASE_URL must be set when REDIS_URL is/);
    const p = problems({ DATABASE_URL: 'mysql://user:hunter2@h/db' });
    expect(p[0]).toMatch(/^DATABASE_URL must be a URL starting with postgres:\/\/ or postgresql:\/\//);
    expect(p[0]).not.toContain('hunter2');
  });

  it('validates ADMIN_BOOTSTRAP_KEY and TRUSTED_PROXIES', () => {
    expect(problems({ ADMIN_BOOTSTRAP_KEY: 'admin' })[0]).toMatch(/^ADMIN_BOOTSTRAP_KEY must be fg_ followed by 43/);
    expect(problems({ ADMIN_BOOTSTRAP_KEY: `fg_${'a'.repeat(43)}` })).toEqual([]);
    expect(loadConfig({ TRUSTED_PROXIES: '10.0.0.0/8, 127.0.0.1,::1/128' }).http.trustedProxies).toHaveLength(3);
    expect(problems({ TRUSTED_PROXIES: '10.0.0.0/33' })[0]).toMatch(/^TRUSTED_PROXIES must be a comma list/);
  });

  it('production defaults: JSON logs, private upstreams refused', () => {
    const c = loadConfig({ NODE_ENV: 'production', ENCRYPTION_KEYS: KEY });
    expect(c.log.format).toBe('json');
    expect(c.upstream.allowPrivate).toBe(false);
  });
});
