import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfig } from '../../src/config/app-config.js';
import { getJson, startGateway, type TestGateway } from '../support/gateway.js';

/**
 * The deployment files must agree with the application: probe paths are routes the app serves (read
 * from its own OpenAPI document), ports line up from the ConfigMap to the Service, the grace period
 * covers the drain, replicas never run migrations, and every manifest passes the offline schema check.
 */

const K8S_DIR = 'docker/k8s';
const VALIDATOR = 'scripts/validate-manifests.mjs';

type Obj = Record<string, any>;

function loadManifests(): Obj[] {
  const out: Obj[] = [];
  for (const file of readdirSync(K8S_DIR).filter((f) => /\.ya?ml$/.test(f))) {
    for (const doc of parseAllDocuments(readFileSync(join(K8S_DIR, file), 'utf8'), { version: '1.1' })) {
      expect(doc.errors, `${file} parses`).toEqual([]);
      const value = doc.toJS() as Obj | null;
      if (value) out.push({ ...value, __file: file });
    }
  }
  return out;
}

const manifests = loadManifests();
function only(kind: string, name?: string): Obj {
  const found = manifests.filter((m) => m.kind === kind && (name === undefined || m.metadata?.name === name));
  expect(found, `exactly one ${kind}${name ? ` ${name}` : ''}`).toHaveLength(1);
  return found[0]!;
}

const deployment = only('Deployment', 'floodgate');
const podSpec = deployment.spec.template.spec as Obj;
const container = (podSpec.containers as Obj[]).find((c) => c.name === 'floodgate')!;
const configMap = only('ConfigMap', 'floodgate-config');
const service = only('Service', 'floodgate');
const job = only('Job', 'floodgate-migrate');
const envList = (c: Obj): Record<string, string> =>
  Object.fromEntries(((c.env ?? []) as Obj[]).map((e) => [e.name, e.value]));
/** What the gateway container sees: the ConfigMap (envFrom) overridden by its own env entries. */
const gatewayEnv: Record<string, string> = { ...configMap.data, ...envList(container) };

function resolvePort(port: number | string): number {
  if (typeof port === 'number') return port;
  const named = (container.ports as Obj[]).find((p) => p.name === port);
  expect(named, `container port named "${port}"`).toBeDefined();
  return named!.containerPort as number;
}

function runValidator(...args: string[]) {
  return spawnSync(process.execPath, [VALIDATOR, ...args], { encoding: 'utf8', timeout: 60_000 });
}

describe('Kubernetes manifests match the application', () => {
  let gw: TestGateway;
  let openApiPaths: Obj;
  beforeAll(async () => {
    gw = await startGateway('embedded');
    const docs = await getJson(`${gw.url}/docs-json`);
    expect(docs.status).toBe(200);
    openApiPaths = docs.body.paths as Obj;
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('the app documents /health/live and /health/ready', () => {
    expect(openApiPaths['/health/live']?.get).toBeDefined();
    expect(openApiPaths['/health/ready']?.get).toBeDefined();
  });

  it('liveness and startup probe /health/live, readiness probes /health/ready, routes the app serves', async () => {
    expect(container.livenessProbe.httpGet.path).toBe('/health/live');
    expect(container.startupProbe.httpGet.path).toBe('/health/live');
    expect(container.readinessProbe.httpGet.path).toBe('/health/ready');
    for (const probe of [container.livenessProbe, container.readinessProbe, container.startupProbe]) {
      const path = probe.httpGet.path as string;
      expect(openApiPaths[path]?.get, `${path} is in the OpenAPI document`).toBeDefined();
      const res = await getJson(`${gw.url}${path}`);
      expect(res.status, `GET ${path}`).toBe(200);
      expect(res.body.status).toBe('ok');
    }
  });

  it('the startup probe leaves minutes for start-up (migrations when MIGRATIONS_RUN is turned on)', () => {
    const p = container.startupProbe;
    expect(p.periodSeconds * p.failureThreshold).toBeGreaterThanOrEqual(120);
  });

  it('the Prometheus scrape annotation points at /metrics (CONTRACT.md) on the app port', () => {
    const annotations = deployment.spec.template.metadata.annotations as Obj;
    expect(annotations['prometheus.io/scrape']).toBe('true');
    expect(annotations['prometheus.io/path']).toBe('/metrics');
    expect(Number(annotations['prometheus.io/port'])).toBe(Number(gatewayEnv.PORT));
  });

  it('one port from the ConfigMap to the container, the probes and the Service', () => {
    const port = Number(gatewayEnv.PORT ?? '3000');
    expect(port).toBe(3000);
    expect(loadConfig({}).http.port).toBe(port); // the app's default, so the image works without PORT too
    const http = (container.ports as Obj[]).find((p) => p.name === 'http')!;
    expect(http.containerPort).toBe(port);
    for (const probe of [container.livenessProbe, container.readinessProbe, container.startupProbe]) {
      expect(resolvePort(probe.httpGet.port)).toBe(port);
    }
    const servicePorts = service.spec.ports as Obj[];
    expect(servicePorts.length).toBeGreaterThan(0);
    for (const p of servicePorts) expect(resolvePort(p.targetPort)).toBe(port);
    expect(service.spec.selector).toEqual(deployment.spec.selector.matchLabels);
  });

  it('terminationGracePeriodSeconds covers the preStop sleep plus SHUTDOWN_TIMEOUT_MS', () => {
    const shutdownSeconds = Number(gatewayEnv.SHUTDOWN_TIMEOUT_MS) / 1000;
    expect(shutdownSeconds).toBe(
      loadConfig({ SHUTDOWN_TIMEOUT_MS: gatewayEnv.SHUTDOWN_TIMEOUT_MS }).shutdownTimeoutMs / 1000,
    );
    const command = container.lifecycle.preStop.exec.command as string[];
    expect(command[0]).toBe('sleep');
    const preStopSeconds = Number(command[1]);
    expect(preStopSeconds).toBeGreaterThan(0);
    expect(podSpec.terminationGracePeriodSeconds).toBeGreaterThan(shutdownSeconds + preStopSeconds);
  });

  it('the Deployment runs ≥ 2 hardened replicas with MIGRATIONS_RUN=false, and the env is a valid production config', () => {
    expect(deployment.spec.replicas).toBeGreaterThanOrEqual(2);
    expect(envList(container).MIGRATIONS_RUN).toBe('false');
    expect(podSpec.securityContext.runAsNonRoot).toBe(true);
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
    expect((container.volumeMounts as Obj[]).map((v) => v.mountPath)).toContain('/tmp');
    expect(container.resources.requests).toMatchObject({
      cpu: expect.any(String),
      memory: expect.any(String),
    });
    expect(container.resources.limits).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });

    // The ConfigMap + Deployment env, with the Secret's keys filled in, is what a pod boots with.
    const secret = only('Secret', 'floodgate-secrets');
    expect(Object.keys(secret.stringData).sort()).toEqual(
      ['ADMIN_BOOTSTRAP_KEY', 'DATABASE_URL', 'ENCRYPTION_KEYS', 'JWT_SECRET', 'REDIS_URL'].sort(),
    );
    const config = loadConfig({
      ...gatewayEnv,
      ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 1).toString('base64')}`,
      JWT_SECRET: 'x'.repeat(32),
      DATABASE_URL: 'postgres://floodgate:pw@postgres:5432/floodgate',
      REDIS_URL: 'redis://redis:6379',
    });
    expect(config.isProduction).toBe(true);
    expect(config.mode).toBe('distributed');
    expect(config.database.migrationsRun).toBe(false);
    expect(config.http.port).toBe(3000);
  });

  it('the migration Job runs the migration CLI that `npm run migration:run` runs', () => {
    const migrate = (job.spec.template.spec.containers as Obj[])[0]!;
    const command = [...(migrate.command ?? []), ...(migrate.args ?? [])].join(' ');
    expect(command).toBe('node dist/src/database/migration-cli.js run');
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts['migration:run']).toContain('node dist/src/database/migration-cli.js run');
    expect(job.spec.template.spec.restartPolicy).toBe('Never');
    expect(envList(migrate).MIGRATIONS_RUN).toBeUndefined();
  });

  it('the PDB and the HPA target the Deployment', () => {
    const pdb = only('PodDisruptionBudget');
    expect(pdb.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
    const hpa = only('HorizontalPodAutoscaler');
    expect(hpa.apiVersion).toBe('autoscaling/v2');
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: 'floodgate' });
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
  });
});

describe('manifest validation (scripts/validate-manifests.mjs, offline Kubernetes schemas)', () => {
  let scratch: string;
  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), 'fg-manifests-'));
  });
  afterAll(() => {
    rmSync(scratch, { recursive: true, force: true });
  });

  it('every manifest under docker/k8s/ is valid', () => {
    const r = runValidator();
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/manifest validation ok: \d+ document/);
  });

  it('rejects a wrong type and an unknown field, naming the file, kind and path', () => {
    const broken = readFileSync(join(K8S_DIR, 'deployment.yaml'), 'utf8')
      .replace('containerPort: 3000', 'containerPort: "3000"')
      .replace('  replicas: 2\n', '  replicas: 2\n  replicaz: 3\n');
    expect(broken).toContain('replicaz');
    const file = join(scratch, 'broken-deployment.yaml');
    writeFileSync(file, broken);
    const r = runValidator(file);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      'broken-deployment.yaml: Deployment "floodgate" (document 1): /spec/template/spec/containers/0/ports/0/containerPort: must be integer',
    );
    expect(r.stderr).toContain(
      'broken-deployment.yaml: Deployment "floodgate" (document 1): /spec/replicaz: unknown field "replicaz"',
    );
  });

  it('rejects a kind it has no schema for, rather than skipping it', () => {
    const file = join(scratch, 'unknown-kind.yaml');
    writeFileSync(file, 'apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n');
    const r = runValidator(file);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('no Kubernetes schema for apiVersion "example.com/v1", kind "Widget"');
  });
});

describe('docker/ files match the application', () => {
  const compose = parse(readFileSync('docker/compose.yml', 'utf8'), { merge: true }) as Obj;
  const dockerfile = readFileSync('docker/Dockerfile', 'utf8');

  it('compose: migrations run once, then two replicas with MIGRATIONS_RUN=false behind one nginx port', () => {
    const services = compose.services as Obj;
    expect(services.migrate.command).toEqual(['node', 'dist/src/database/migration-cli.js', 'run']);
    const replicas = Object.keys(services).filter((name) => name.startsWith('gateway-'));
    expect(replicas).toHaveLength(2);
    for (const name of replicas) {
      const svc = services[name] as Obj;
      expect(svc.environment.MIGRATIONS_RUN).toBe('false');
      expect(svc.depends_on.migrate.condition).toBe('service_completed_successfully');
      expect(svc.ports).toBeUndefined();
    }
    const published = Object.values(services).filter((s: Obj) => s.ports);
    expect(published).toHaveLength(1);
    expect((published[0] as Obj).image).toMatch(/^nginx:/);
  });

  it('Dockerfile: non-root, port 3000, healthcheck on /health/live, node dist/src/main.js', () => {
    expect(dockerfile).toMatch(/^EXPOSE 3000$/m);
    expect(dockerfile).toMatch(/^USER 1000:1000$/m);
    expect(dockerfile).toMatch(/^HEALTHCHECK .*\n.*\/health\/live/m);
    expect(dockerfile).toContain('CMD ["node", "dist/src/main.js"]');
    expect(dockerfile).toMatch(/^STOPSIGNAL SIGTERM$/m);
  });

  it('Dockerfile: glibc gives large buffers back (fixed mmap threshold, docs/performance.md memory)', () => {
    const runtime = dockerfile.slice(dockerfile.indexOf('AS runtime'));
    expect(runtime).toMatch(/^\s+MALLOC_MMAP_THRESHOLD_=131072 \\$/m);
  });
});
