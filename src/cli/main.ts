import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { packageInfo } from '../common/package-info.js';
import { AdminClient, DEFAULT_URL, normalizeBaseUrl } from './client.js';
import {
  GLOBAL_OPTIONS,
  optBool,
  optString,
  parseCommandArgs,
  splitCommand,
  type CommandContext,
  type CommandSpec,
  type OptionSpec,
} from './command.js';
import { ENCRYPTION_COMMANDS } from './commands/encryption.js';
import { KEYS_COMMANDS } from './commands/keys.js';
import { PROVIDERS_COMMANDS } from './commands/providers.js';
import { ROUTES_COMMANDS } from './commands/routes.js';
import { STATUS_COMMANDS } from './commands/status.js';
import { UPSTREAM_KEYS_COMMANDS } from './commands/upstream-keys.js';
import { USERS_COMMANDS } from './commands/users.js';
import {
  CommandError,
  ConnectionError,
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  GatewayError,
  UsageError,
} from './errors.js';
import { Output, type Writer } from './output.js';

export const COMMANDS: CommandSpec[] = [
  ...KEYS_COMMANDS,
  ...USERS_COMMANDS,
  ...PROVIDERS_COMMANDS,
  ...ROUTES_COMMANDS,
  ...UPSTREAM_KEYS_COMMANDS,
  ...ENCRYPTION_COMMANDS,
  ...STATUS_COMMANDS,
];

const GROUPS: Record<string, string> = {
  keys: 'client API keys: create, list, revoke',
  users: 'users: create, list',
  providers: 'upstream providers: add, list, disable, enable',
  routes: 'model routes (aliases → provider models): create, list, delete',
  'upstream-keys': "providers' API keys: add, list, disable, enable",
  encryption: 'encryption at rest: rotate',
  status: 'what the gateway is doing right now',
};

export interface CliIo {
  stdout: Writer;
  stderr: Writer;
  env: NodeJS.ProcessEnv;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
}

function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, env: process.env, stdin: process.stdin };
}

/** Runs one command line; returns the exit code (0 ok, 1 the gateway failed or refused, 2 usage). */
export async function run(argv: string[], io: CliIo = processIo()): Promise<number> {
  const out = new Output(io.stdout, io.stderr);
  try {
    return await dispatch(argv, io, out);
  } catch (err) {
    return report(err, out);
  }
}

async function dispatch(argv: string[], io: CliIo, out: Output): Promise<number> {
  const first = splitCommand(argv, 1);
  const group = first.words[0];
  if (group === undefined) {
    if (first.rest.includes('--version') || first.rest.includes('-v')) {
      out.line(packageInfo().version);
      return EXIT_OK;
    }
    if (first.rest.includes('--help') || first.rest.includes('-h')) {
      out.line(topHelp());
      return EXIT_OK;
    }
    if (first.rest.length > 0) {
      parseCommandArgs({ name: '', options: {}, positionals: { min: 0, max: 0 } }, first.rest);
    }
    io.stderr.write(`${topHelp()}\n`);
    return EXIT_USAGE;
  }
  if (group === 'help') {
    const topic = splitCommand(first.rest, 2).words;
    out.line(topic.length === 0 ? topHelp() : helpFor(topic));
    return EXIT_OK;
  }
  let spec = COMMANDS.find((c) => c.name === group);
  let rest = first.rest;
  if (!spec) {
    if (!(group in GROUPS)) throw new UsageError(`unknown command "${group}"`);
    const second = splitCommand(first.rest, 1);
    const action = second.words[0];
    if (action === undefined) {
      if (second.rest.includes('--help') || second.rest.includes('-h')) {
        out.line(groupHelp(group));
        return EXIT_OK;
      }
      throw new UsageError(`"${group}" needs a command: ${actionsOf(group).join(', ')}`, group);
    }
    spec = COMMANDS.find((c) => c.name === `${group} ${action}`);
    if (!spec) {
      throw new UsageError(
        `unknown command "${group} ${action}" (${group}: ${actionsOf(group).join(', ')})`,
        group,
      );
    }
    rest = second.rest;
  }
  const { values, positionals } = parseCommandArgs(spec, rest);
  if (optBool(values, 'help')) {
    out.line(commandHelp(spec));
    return EXIT_OK;
  }
  const urlFlag = optString(values, 'url');
  const baseUrl = normalizeBaseUrl(
    urlFlag ?? io.env.FLOODGATE_URL ?? DEFAULT_URL,
    urlFlag !== undefined ? '--url' : 'FLOODGATE_URL',
  );
  let client: AdminClient | undefined;
  const ctx: CommandContext = {
    values,
    positionals,
    json: optBool(values, 'json'),
    out,
    env: io.env,
    stdin: io.stdin,
    client: () => {
      if (client) return client;
      const key = io.env.FLOODGATE_ADMIN_KEY?.trim();
      if (!key) {
        throw new UsageError(
          'FLOODGATE_ADMIN_KEY is not set: export the admin API key (printed at the first start, or your ADMIN_BOOTSTRAP_KEY)',
        );
      }
      client = new AdminClient(baseUrl, key);
      return client;
    },
  };
  await spec.run(ctx);
  return EXIT_OK;
}

function report(err: unknown, out: Output): number {
  if (err instanceof UsageError) {
    const see = err.command ? `floodgate ${err.command} --help` : 'floodgate --help';
    out.stderr.write(`floodgate: ${err.message}\n(see ${see})\n`);
    return EXIT_USAGE;
  }
  if (err instanceof GatewayError) {
    out.stderr.write(`floodgate: ${err.message}\n  ${err.details()}\n`);
    return EXIT_FAILURE;
  }
  if (err instanceof ConnectionError || err instanceof CommandError) {
    out.stderr.write(`floodgate: ${err.message}\n`);
    return EXIT_FAILURE;
  }
  out.stderr.write(
    `floodgate: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  return EXIT_FAILURE;
}

// ---- help ------------------------------------------------------------------------------------

function actionsOf(group: string): string[] {
  return COMMANDS.filter((c) => c.name.startsWith(`${group} `)).map((c) => c.name.slice(group.length + 1));
}

function optionLines(options: Record<string, OptionSpec>): string[] {
  const entries = Object.entries(options).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.value ? ` ${o.value}` : ''}`;
    return [flag, o.help] as const;
  });
  const width = Math.max(...entries.map(([flag]) => flag.length));
  return entries.map(([flag, help]) => `  ${flag.padEnd(width)}  ${help}`);
}

const ENV_HELP = [
  'Environment:',
  '  FLOODGATE_ADMIN_KEY  an admin API key (required; never given as a flag)',
  `  FLOODGATE_URL        the gateway (default ${DEFAULT_URL})`,
];

const EXIT_HELP = 'Exit codes: 0 ok, 1 the gateway refused or could not be reached, 2 usage error.';

export function topHelp(): string {
  const width = Math.max(...Object.keys(GROUPS).map((g) => g.length));
  return [
    'floodgate: operate a running Floodgate gateway through its admin API',
    '',
    'Usage: floodgate <command> [options]      (npm run cli -- <command> inside the repository)',
    '',
    'Commands:',
    ...Object.entries(GROUPS).map(([g, text]) => `  ${g.padEnd(width)}  ${text}`),
    '',
    'Options for every command:',
    ...optionLines(GLOBAL_OPTIONS),
    '',
    ...ENV_HELP,
    '',
    EXIT_HELP,
    'Run "floodgate <command> --help" for a command\'s options.',
  ].join('\n');
}

function groupHelp(group: string): string {
  const specs = COMMANDS.filter((c) => c.name.startsWith(`${group} `));
  const width = Math.max(...specs.map((c) => c.name.length));
  return [
    `floodgate ${group}: ${GROUPS[group]}`,
    '',
    'Commands:',
    ...specs.map((c) => `  floodgate ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    `Run "floodgate ${group} <command> --help" for its options.`,
  ].join('\n');
}

export function commandHelp(spec: CommandSpec): string {
  const lines = [`Usage: floodgate ${spec.name}${spec.usage ? ` ${spec.usage}` : ''} [--url URL] [--json]`];
  lines.push('', `${spec.summary[0]!.toUpperCase()}${spec.summary.slice(1)}.`);
  if (spec.description?.length) lines.push('', ...spec.description);
  if (Object.keys(spec.options).length > 0) lines.push('', 'Options:', ...optionLines(spec.options));
  lines.push('', 'Global options:', ...optionLines(GLOBAL_OPTIONS));
  if (spec.examples?.length) lines.push('', 'Examples:', ...spec.examples.map((e) => `  ${e}`));
  lines.push('', ...ENV_HELP, '', EXIT_HELP);
  return lines.join('\n');
}

function helpFor(words: string[]): string {
  const name = words.join(' ');
  const spec = COMMANDS.find((c) => c.name === name);
  if (spec) return commandHelp(spec);
  if (words.length === 1 && words[0]! in GROUPS) return groupHelp(words[0]!);
  throw new UsageError(`unknown command "${name}"`);
}

/** `node dist/src/cli/main.js …` works too (e.g. inside the Docker image, which has dist/ but not bin/). */
function isEntryPoint(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isEntryPoint()) process.exitCode = await run(process.argv.slice(2));
