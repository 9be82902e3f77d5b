#!/usr/bin/env node
// The operator CLI (`npx floodgate …`, `npm run cli -- …`): a thin launcher for the compiled
// dist/src/cli/main.js (built by `npm run build`). Exit codes: 0 ok, 1 gateway error, 2 usage.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const main = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  process.stderr.write(`floodgate: the CLI is not built (${main} is missing): run npm run build first\n`);
  process.exit(2);
}
const { run } = await import(pathToFileURL(main).href);
process.exitCode = await run(process.argv.slice(2));
