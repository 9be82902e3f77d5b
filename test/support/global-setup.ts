import { execFileSync } from 'node:child_process';
import { checkServices, TEST_POSTGRES_URL, TEST_REDIS_URL } from './services.js';

/**
 * Runs once before the e2e tests: the services must be reachable (a clear failure, never a silent
 * skip), and dist/ must be current because some tests start the real `node dist/src/main.js`.
 */
export default async function setup(): Promise<void> {
  const problems = await checkServices();
  if (problems.length > 0) {
    throw new Error(
      [
        'The tests need a real Postgres and Redis:',
        ...problems.map((p) => `  - ${p}`),
        `Point DATABASE_URL (now ${TEST_POSTGRES_URL}) and REDIS_URL (now ${TEST_REDIS_URL}) at running servers,`,
        'or start the local ones (see README "Tests").',
      ].join('\n'),
    );
  }
  try {
    execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], {
      stdio: 'pipe',
    });
  } catch (err) {
    // tsc still emits JavaScript on type errors; the typecheck step of CI reports them.
    const out = String((err as { stdout?: Buffer }).stdout ?? '');
    process.stderr.write(
      `warning: the build reported type errors (tests that start dist/src/main.js may fail):\n${out.slice(0, 2000)}\n`,
    );
  }
  // tsc copies only TypeScript: the scripts' .lua files go next to their modules.
  execFileSync(process.execPath, ['scripts/copy-lua.mjs'], { stdio: 'pipe' });
}
