import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const depcruise = 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs';

describe('module boundaries (dependency-cruiser)', () => {
  it('the real source tree has no violation', async () => {
    const { stdout } = await run(process.execPath, [depcruise, 'src', '--config', '.dependency-cruiser.cjs']);
    expect(stdout).toContain('no dependency violations found');
  });

  it('rejects deliberately wrong imports (fixture tree)', async () => {
    const cwd = 'test/fixtures/boundaries';
    const failure = await run(
      process.execPath,
      [`../../../${depcruise}`, 'src', '--config', '../../../.dependency-cruiser.cjs'],
      { cwd },
    ).then(
      () => null,
      (err: { stdout: string; code: number }) => err,
    );
    expect(failure).not.toBeNull();
    expect(failure!.code).not.toBe(0);
    expect(failure!.stdout).toContain('only-public-surface-across-modules: src/health/reaches-internals.ts');
    expect(failure!.stdout).toContain('nothing-imports-relay: src/key-pool/imports-relay.ts');
    expect(failure!.stdout).toContain(
      'infrastructure-does-not-depend-on-features: src/state/imports-feature.ts',
    );
    // domain code (src/*/domain/**) imports no Nest, Fastify, Redis, pg, TypeORM, BullMQ, undici
    expect(failure!.stdout).toMatch(
      /domain-is-pure: src\/relay\/domain\/imports-nest\.ts → \S*node_modules\/@nestjs\/common/,
    );
    expect(failure!.stdout).toMatch(
      /domain-is-pure: src\/relay\/domain\/imports-undici\.ts → \S*node_modules\/undici/,
    );
    expect(failure!.stdout).toMatch(
      /domain-is-pure: src\/adaptive\/domain\/imports-ioredis\.ts → \S*node_modules\/ioredis/,
    );
    // …nor its module's infrastructure/services (nor state/, redis/, database/)
    expect(failure!.stdout).toContain(
      'domain-does-not-reach-io: src/key-pool/domain/imports-infrastructure.ts → src/key-pool/infrastructure/selection.script.ts',
    );
    // services reach Postgres through their module's repositories: no TypeORM import, not even a type
    expect(failure!.stdout).toMatch(
      /services-go-through-repositories: src\/key-pool\/services\/imports-typeorm\.ts → \S*node_modules\/typeorm\//,
    );
    expect(failure!.stdout).toMatch(
      /services-go-through-repositories: src\/adaptive\/services\/imports-nest-typeorm\.ts → \S*node_modules\/@nestjs\/typeorm\//,
    );
    expect(failure!.stdout).not.toContain('src/key-pool/services/uses-repository.ts');
    expect(failure!.stdout).not.toContain('src/health/good.ts');
    expect(failure!.stdout).not.toContain('src/relay/domain/pure.ts');
  });
});
