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

export interface AppConfig {
  env: NodeEnv;
  isProduction: boolean;
  /** `distributed` when REDIS_URL is set: state shared through Redis by many instances. */
  mode: Mode;
  http: {
    host: string;
    port: number;
    bodyLimitBytes: number;
    trustedProxies: string[];
  };
  database: {
    /** Postgres URL; undefined means embedded PGlite under dataDir. */
    url: string | undefined;
    dataDir: string;
    inMemory: boolean;
    migrationsRun: boolean;
    poolSize: number;
  };
  redis: {
    url: string | undefined;
    /** Every key Floodgate writes starts with this prefix (several deployments can share one Redis). */
    prefix: string;
  };
  log: { level: LogLevel; format: LogFormat };
  auth: {
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
  rateLimit: {
    failureMode: FailureMode;
  };
  upstream: {
    allowPrivate: boolean;
  };
  queue: {
    fullPolicy: QueueFullPolicy;
  };
  shutdownTimeoutMs: number;
  metricsToken: string | undefined;
  otlpEndpoint: string | undefined;
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
        return this.fail(name, `a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`, redactUrl(value));
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
  for (const part of value.split(',').map((p) => p.trim()).filter(Boolean)) {
    const idx = part.indexOf(':');
    const id = idx > 0 ? part.slice(0, idx) : '';
    const material = idx > 0 ? part.slice(idx + 1) : '';
    const key = Buffer.from(material, 'base64');
    if (!/^[A-Za-z0-9_.-]{1,32}$/.test(id) || key.length !== 32 || key.toString('base64') !== normaliseB64(material)) {
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
  if (keys.length === 0) reader.problems.push('ENCRYPTION_KEYS must hold at least one id:base64(32 bytes) entry, got none');
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
  if (isIP(host) === 0 && host !== 'localhost') r.problems.push(`HOST must be an IP address or localhost, got ${JSON.stringify(host)}`);

  const databaseUrl = r.url('DATABASE_URL', ['postgres:', 'postgresql:']);
  const redisUrl = r.url('REDIS_URL', ['redis:', 'rediss:']);
  if (r.raw('REDIS_URL') && !r.raw('DATABASE_URL')) {
    r.problems.push(
      'DATABASE_URL must be set when REDIS_URL is (distributed mode shares one Postgres between instances), got nothing',
    );
  }
  const dataDir = r.string('DATA_DIR') ?? './.data';

  const logLevel = r.oneOf<LogLevel>('LOG_LEVEL', LOG_LEVELS, 'info');
  const logFormat = r.oneOf<LogFormat>('LOG_FORMAT', ['pretty', 'json'], nodeEnv === 'development' ? 'pretty' : 'json');

  const adminBootstrapKey = r.string('ADMIN_BOOTSTRAP_KEY');
  if (adminBootstrapKey !== undefined && !API_KEY_PATTERN.test(adminBootstrapKey)) {
    r.problems.push('ADMIN_BOOTSTRAP_KEY must be fg_ followed by 43 base64url characters, got a value that is not');
  }

  const jwtSecret = r.string('JWT_SECRET');
  const jwtPublicKey = r.string('JWT_PUBLIC_KEY')?.replace(/\\n/g, '\n');
  if (jwtSecret && jwtPublicKey) r.problems.push('JWT_SECRET and JWT_PUBLIC_KEY must not both be set, got both');
  if (jwtPublicKey && !/-----BEGIN (RSA |EC )?PUBLIC KEY-----/.test(jwtPublicKey)) {
    r.problems.push('JWT_PUBLIC_KEY must be a PEM public key (-----BEGIN PUBLIC KEY-----), got something else');
  }
  const algorithmsRaw = r.string('JWT_ALGORITHMS');
  let algorithms: JwtAlgorithm[] = jwtPublicKey ? ['RS256'] : ['HS256'];
  if (algorithmsRaw) {
    const list = algorithmsRaw.split(',').map((a) => a.trim()).filter(Boolean);
    const bad = list.filter((a) => !JWT_ALGORITHMS.includes(a as JwtAlgorithm));
    if (bad.length > 0 || list.length === 0) {
      r.problems.push(`JWT_ALGORITHMS must be a comma list of ${JWT_ALGORITHMS.join(', ')}, got ${JSON.stringify(algorithmsRaw)}`);
    } else {
      algorithms = list as JwtAlgorithm[];
    }
  }
  const hmac = algorithms.filter((a) => a.startsWith('HS'));
  const asymmetric = algorithms.filter((a) => !a.startsWith('HS'));
  if (jwtSecret && asymmetric.length > 0) {
    r.problems.push(`JWT_ALGORITHMS must list only HS* algorithms with JWT_SECRET, got ${asymmetric.join(', ')}`);
  }
  if (jwtPublicKey && hmac.length > 0) {
    // A public key used as an HMAC secret is the classic algorithm-confusion attack.
    r.problems.push(`JWT_ALGORITHMS must not list HS* algorithms with JWT_PUBLIC_KEY, got ${hmac.join(', ')}`);
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
    r.problems.push('ENCRYPTION_KEYS must be set in production (comma list of id:base64(32 bytes)), got nothing');
  } else if (options.generatedEncryptionKeys) {
    encryptionKeys = parseEncryptionKeys(r, options.generatedEncryptionKeys);
    generated = true;
  }

  const trustedRaw = r.string('TRUSTED_PROXIES');
  const trustedProxies = trustedRaw ? trustedRaw.split(',').map((c) => c.trim()).filter(Boolean) : [];
  const badCidrs = trustedProxies.filter((c) => !isValidCidr(c));
  if (badCidrs.length > 0) {
    r.problems.push(`TRUSTED_PROXIES must be a comma list of IP addresses or CIDRs, got ${JSON.stringify(badCidrs.join(','))}`);
  }

  const config: AppConfig = {
    env: nodeEnv,
    isProduction,
    mode: redisUrl ? 'distributed' : 'embedded',
    http: {
      host,
      port,
      bodyLimitBytes: r.int('BODY_LIMIT_BYTES', 4 * 1024 * 1024, 1024, 100 * 1024 * 1024),
      trustedProxies,
    },
    database: {
      url: databaseUrl,
      dataDir,
      inMemory: dataDir === ':memory:',
      migrationsRun: r.bool('MIGRATIONS_RUN', true),
      poolSize: r.int('DATABASE_POOL_SIZE', 10, 1, 200),
    },
    redis: {
      url: redisUrl,
      prefix: r.string('REDIS_PREFIX') ?? 'floodgate',
    },
    log: { level: logLevel, format: logFormat },
    auth: {
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
    rateLimit: {
      failureMode: r.oneOf<FailureMode>('RATE_LIMIT_FAILURE_MODE', ['open', 'closed'], 'open'),
    },
    upstream: {
      allowPrivate: r.bool('ALLOW_PRIVATE_UPSTREAMS', !isProduction),
    },
    queue: {
      fullPolicy: r.oneOf<QueueFullPolicy>('QUEUE_FULL_POLICY', ['reject', 'passthrough'], 'reject'),
    },
    shutdownTimeoutMs: r.int('SHUTDOWN_TIMEOUT_MS', 30000, 0, 3600000),
    metricsToken: r.string('METRICS_TOKEN'),
    otlpEndpoint: r.url('OTEL_EXPORTER_OTLP_ENDPOINT', ['http:', 'https:']),
  };
  if (r.raw('REDIS_PREFIX') && !/^[A-Za-z0-9_.:-]{1,64}$/.test(config.redis.prefix)) {
    r.problems.push(`REDIS_PREFIX must be 1-64 of A-Z a-z 0-9 _ . : -, got ${JSON.stringify(config.redis.prefix)}`);
  }

  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return config;
}
