import { Writable } from 'node:stream';
import { createInterface } from 'node:readline';
import { UsageError } from './errors.js';
import type { Output } from './output.js';

export interface SecretSources {
  /** `--key-env NAME`: the value is in this environment variable. */
  envName?: string;
  /** `--key VALUE`: works, but lands in shell history and the process list (warned). */
  flagValue?: string;
  env: NodeJS.ProcessEnv;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  out: Output;
  command: string;
}

/**
 * The upstream key value, from (in order) `--key-env NAME`, `--key VALUE` (with a warning), or
 * stdin: piped (`… < file`, `printf %s "$KEY" | …`; trailing line breaks dropped) or typed at a
 * prompt without echo.
 */
export async function readSecret(src: SecretSources): Promise<string> {
  if (src.envName !== undefined && src.flagValue !== undefined) {
    throw new UsageError('give the key with --key-env or --key, not both', src.command);
  }
  let value: string;
  if (src.envName !== undefined) {
    const v = src.env[src.envName];
    if (v === undefined || v.length === 0) {
      throw new UsageError(
        `--key-env ${src.envName}: the environment variable is not set or empty`,
        src.command,
      );
    }
    value = v;
  } else if (src.flagValue !== undefined) {
    src.out.warn(
      '--key puts the secret in your shell history and the process list; prefer --key-env NAME or stdin',
    );
    value = src.flagValue;
  } else if (src.stdin.isTTY) {
    value = await prompt(src.stdin, src.out, 'Upstream key (input hidden): ');
  } else {
    value = await readAll(src.stdin);
  }
  value = value.replace(/[\r\n]+$/, '');
  if (value.trim().length === 0) {
    throw new UsageError(
      'no key value: use --key-env NAME, or pipe it on stdin (printf %s "$KEY" | floodgate …)',
      src.command,
    );
  }
  return value;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads one line from a terminal without echoing it. */
function prompt(stdin: NodeJS.ReadableStream, out: Output, question: string): Promise<string> {
  out.stderr.write(question);
  const muted = new Writable({ write: (_chunk, _enc, done) => done() });
  const rl = createInterface({ input: stdin, output: muted, terminal: true });
  return new Promise((resolve) => {
    rl.once('line', (line) => {
      rl.close();
      out.stderr.write('\n');
      resolve(line);
    });
    rl.once('close', () => resolve(''));
  });
}
