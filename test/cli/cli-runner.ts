import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';

const ROOT = join(dirname(new URL(import.meta.url).pathname), '..', '..');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON (for --json runs). */
  json(): any;
}

export interface CliOptions {
  /** Environment on top of PATH (FLOODGATE_URL / FLOODGATE_ADMIN_KEY usually). */
  env?: Record<string, string | undefined>;
  /** Written to stdin, then stdin is closed (default: closed at once, as with `< /dev/null`). */
  input?: string;
}

/** Runs `node bin/floodgate.js …` as a real process, as an operator would (dist is built by the global setup). */
export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '' };
  for (const [k, v] of Object.entries(options.env ?? {})) if (v !== undefined) env[k] = v;
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['bin/floodgate.js', ...args], {
      cwd: ROOT,
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.on('error', reject);
    proc.on('close', (code) =>
      resolve({
        code,
        stdout,
        stderr,
        json: () => {
          try {
            return JSON.parse(stdout);
          } catch {
            throw new Error(`stdout is not JSON (exit ${code}):\n${stdout}\nstderr:\n${stderr}`);
          }
        },
      }),
    );
    proc.stdin.end(options.input ?? '');
  });
}

/** A runner bound to one gateway and admin key. */
export function cliFor(url: string, adminKey: string) {
  return (args: string[], options: CliOptions = {}) =>
    runCli(args, {
      ...options,
      env: { FLOODGATE_URL: url, FLOODGATE_ADMIN_KEY: adminKey, ...options.env },
    });
}

/** The lines of a table printed by the CLI, split into cells (two or more spaces apart). */
export function tableRows(stdout: string): string[][] {
  return stdout
    .trimEnd()
    .split('\n')
    .map((l) => l.split(/ {2,}/).map((c) => c.trim()));
}
