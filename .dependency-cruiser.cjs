/**
 * Module boundaries (docs/CONVENTIONS.md). Feature modules talk to each other only through a
 * module's public surface: its *.module.ts file and the service files it exports (listed in
 * PUBLIC below). Direction: relay → key-pool/adaptive/rate-limit → auth/audit/common → infrastructure.
 */
const FEATURES = [
  'auth',
  'audit',
  'rate-limit',
  'key-pool',
  'adaptive',
  'routing',
  'spend',
  'requests',
  'alerts',
  'relay',
  'observability',
  'health',
];
const INFRA = ['config', 'database', 'redis', 'state', 'logging', 'metrics'];

// What each module lets others import (module file + exported services + shared types).
const PUBLIC = [
  '\\.module\\.ts$',
  '\\.service\\.ts$',
  '\\.types\\.ts$',
  '/readiness\\.state\\.ts$',
  '^src/observability/tracing\\.ts$',
  // infrastructure and common code is public by design
  ...INFRA.map((m) => `^src/${m}/`),
  '^src/common/',
];

// Packages domain code must not import (matched on the resolved path, wherever node_modules is).
const DOMAIN_FORBIDDEN = `(^|/)node_modules/(${[
  '@nestjs/',
  'fastify/',
  '@fastify/',
  'ioredis/',
  'pg/',
  'pg-[^/]+/',
  '@types/pg/',
  '@electric-sql/',
  'typeorm/',
  'bullmq/',
  'undici/',
].join('|')})`;

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'nothing-imports-relay',
      comment: 'The relay is the top of the graph: nothing may depend on it.',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/relay/', '^src/app/', '^src/main\\.ts$'] },
      to: { path: '^src/relay/' },
    },
    {
      name: 'infrastructure-does-not-depend-on-features',
      comment: 'config/database/redis/state/logging/common sit below every feature.',
      severity: 'error',
      from: { path: `^src/(${INFRA.join('|')}|common)/`, pathNot: '^src/database/migration-cli\\.ts$' },
      to: { path: `^src/(${FEATURES.join('|')}|app)/` },
    },
    {
      name: 'lower-layers-do-not-import-upper',
      comment:
        'auth/audit/health sit below rate-limit, key-pool and adaptive; those sit below relay and observability.',
      severity: 'error',
      from: { path: '^src/(auth|audit|health)/' },
      to: { path: '^src/(rate-limit|key-pool|adaptive|routing|spend|alerts|relay|observability)/' },
    },
    {
      name: 'routing-sits-below-relay-and-observability',
      comment:
        'Routing (aliases, breakers) uses KeyPool and the stores; rate-limit, key-pool and adaptive never import it.',
      severity: 'error',
      from: { path: '^src/(rate-limit|key-pool|adaptive)/' },
      to: { path: '^src/routing/' },
    },
    {
      name: 'alerts-sits-below-relay-and-observability',
      comment:
        'Alerts (webhooks) listens to KeyPool and Routing and may use auth, audit and the infrastructure; only the app, relay and observability import it (AlertsService.emit).',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/(alerts|app|relay|observability)/', '^src/main\\.ts$'] },
      to: { path: '^src/alerts/' },
    },
    {
      name: 'alerts-imports-only-what-it-listens-to',
      comment:
        'Alerts may import key-pool, routing, auth, audit, state, config, database, metrics, common (and logging/redis infrastructure); never rate-limit, adaptive, relay, observability or health.',
      severity: 'error',
      from: { path: '^src/alerts/' },
      to: { path: '^src/(rate-limit|adaptive|relay|observability|health)/' },
    },
    {
      name: 'spend-sits-below-relay-and-observability',
      comment:
        'Spend (prices, cost, rollups) uses KeyPool; rate-limit, key-pool and adaptive never import it (the relay does).',
      severity: 'error',
      from: { path: '^src/(rate-limit|key-pool|adaptive)/' },
      to: { path: '^src/spend/' },
    },
    {
      name: 'requests-sits-below-relay',
      comment:
        'Requests (the request-log API, body capture rules) reads the table the relay writes; only the app and the relay import it (BodyCaptureService).',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/(requests|app|relay)/', '^src/main\\.ts$'] },
      to: { path: '^src/requests/' },
    },
    {
      name: 'key-pool-does-not-import-adaptive-or-rate-limit',
      comment: 'Adaptive plugs into KeyPool through KeyPool’s extension point, not the other way round.',
      severity: 'error',
      from: { path: '^src/key-pool/' },
      to: { path: '^src/(adaptive|rate-limit)/' },
    },
    {
      name: 'only-public-surface-across-modules',
      comment:
        'Import another module only through its module file or exported services, never its internals.',
      severity: 'error',
      from: { path: '^src/([^/]+)/' },
      to: {
        path: '^src/([^/]+)/',
        pathNot: ['^src/$1/', ...PUBLIC],
      },
    },
    {
      name: 'domain-is-pure',
      comment:
        'Domain rules (src/<module>/domain/**) are plain TypeScript: no Nest, Fastify, Redis, Postgres, TypeORM, BullMQ or undici. Services orchestrate them; infrastructure talks to the stores.',
      severity: 'error',
      from: { path: '^src/[^/]+/domain/' },
      to: { path: DOMAIN_FORBIDDEN },
    },
    {
      name: 'domain-does-not-reach-io',
      comment:
        'Domain rules do not call the layers that do I/O: not their own module’s services/ or infrastructure/ (nor relay stages/), not state/, redis/ or database/. Those call the domain.',
      severity: 'error',
      from: { path: '^src/[^/]+/domain/' },
      to: { path: '^src/([^/]+/(services|infrastructure|stages)/|state/|redis/|database/)' },
    },
    {
      name: 'services-go-through-repositories',
      comment:
        'Key-pool and adaptive services orchestrate; the SQL lives in repositories in their module’s infrastructure/ (provider.repository.ts, provider-key.repository.ts, adaptive-state.repository.ts). A service imports no TypeORM, not even a type: a transaction is the repository file’s TransactionManager alias.',
      severity: 'error',
      from: { path: '^src/(key-pool|adaptive|spend)/services/' },
      to: { path: '(^|/)node_modules/(typeorm|@nestjs/typeorm)/' },
    },
    {
      name: 'src-does-not-import-tests',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '\\.spec\\.ts$' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
      extensions: ['.ts', '.js'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
