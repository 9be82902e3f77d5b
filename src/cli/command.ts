import { parseArgs } from 'node:util';
import type { AdminClient } from './client.js';
import { UsageError } from './errors.js';
import type { Output } from './output.js';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** Placeholder shown in help (`--rpm N`). */
  value?: string;
  help: string;
}

export type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

export interface CommandContext {
  values: Values;
  positionals: string[];
  /** The admin API client (created on first use: help and usage errors never need the key). */
  client(): AdminClient;
  out: Output;
  json: boolean;
  env: NodeJS.ProcessEnv;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
}

export interface CommandSpec {
  /** "keys create", "status". */
  name: string;
  summary: string;
  /** What follows "floodgate <name>" in the usage line. */
  usage: string;
  description?: string[];
  options: Record<string, OptionSpec>;
  /** How many positional arguments the command takes. */
  positionals: { min: number; max: number };
  examples?: string[];
  run(ctx: CommandContext): Promise<void>;
}

export const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  url: {
    type: 'string',
    value: 'URL',
    help: 'the gateway (default: $FLOODGATE_URL, else http://localhost:3000)',
  },
  json: { type: 'boolean', help: "print the API's JSON instead of a table (for scripts)" },
  help: { type: 'boolean', short: 'h', help: 'show help' },
};

function parseConfig(options: Record<string, OptionSpec>) {
  return Object.fromEntries(
    Object.entries(options).map(([name, o]) => [
      name,
      { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) },
    ]),
  );
}

/**
 * Splits argv into the command words and the rest: the first one or two words that are not
 * options (global options may come before them), e.g. `--json keys list --user x` → ["keys",
 * "list"] and ["--json", "--user", "x"].
 */
export function splitCommand(argv: string[], maxWords = 2): { words: string[]; rest: string[] } {
  const words: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (words.length >= maxWords || token === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    if (token.startsWith('-')) {
      rest.push(token);
      if (token === '--url' && i + 1 < argv.length) rest.push(argv[++i]!);
      continue;
    }
    // Only the first word after a group is its action; later words are positionals.
    words.push(token);
  }
  return { words, rest };
}

/** Parses the options and positionals of one command (strict: an unknown flag is a usage error). */
export function parseCommandArgs(
  spec: Pick<CommandSpec, 'name' | 'options' | 'positionals'>,
  args: string[],
): { values: Values; positionals: string[] } {
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({
      args,
      options: parseConfig({ ...GLOBAL_OPTIONS, ...spec.options }),
      allowPositionals: true,
      strict: true,
    }) as { values: Values; positionals: string[] };
  } catch (err) {
    throw new UsageError(cleanParseError((err as Error).message), spec.name);
  }
  if (parsed.values.help) return parsed;
  const { min, max } = spec.positionals;
  if (parsed.positionals.length < min) {
    throw new UsageError(`missing argument${min - parsed.positionals.length > 1 ? 's' : ''}`, spec.name);
  }
  if (parsed.positionals.length > max) {
    throw new UsageError(`unexpected argument "${parsed.positionals[max]}"`, spec.name);
  }
  return parsed;
}

function cleanParseError(message: string): string {
  // node:util's messages are good but mention its own API ("To specify a positional argument…").
  return message
    .replace(/\. To specify a positional argument.*$/s, '')
    .replace(/^Unknown option '([^']+)'.*$/s, 'unknown option $1')
    .replace(/^Option '(\S+)(?: <value>)?' argument missing$/, 'option $1 needs a value')
    .replace(/^Option '([^']+)' does not take an argument$/, 'option $1 takes no value');
}

// ---- typed option readers ----------------------------------------------------------------------

export function optString(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function reqString(values: Values, name: string, command: string): string {
  const v = optString(values, name);
  if (v === undefined || v.length === 0) throw new UsageError(`--${name} is required`, command);
  return v;
}

export function optBool(values: Values, name: string): boolean {
  return values[name] === true;
}

/** A string option that may be repeated and/or comma-separated: `--models a,b --models c`. */
export function optList(values: Values, name: string): string[] | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const all = (Array.isArray(v) ? v : [v]).map(String);
  return all
    .flatMap((s) => s.split(','))
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** An integer option in [min, max]; `none` (when allowed) means null (no limit). */
export function optInt(
  values: Values,
  name: string,
  command: string,
  range: { min: number; max: number; allowNone?: boolean },
): number | null | undefined {
  const v = optString(values, name);
  if (v === undefined) return undefined;
  if (range.allowNone && v === 'none') return null;
  if (!/^\d+$/.test(v) || Number(v) < range.min || Number(v) > range.max) {
    throw new UsageError(
      `--${name} must be an integer ${range.min}-${range.max}${range.allowNone ? ' or "none"' : ''}, got "${v}"`,
      command,
    );
  }
  return Number(v);
}

export function optChoice<T extends string>(
  values: Values,
  name: string,
  command: string,
  choices: readonly T[],
): T | undefined {
  const v = optString(values, name);
  if (v === undefined) return undefined;
  if (!(choices as readonly string[]).includes(v)) {
    throw new UsageError(`--${name} must be one of ${choices.join(', ')}, got "${v}"`, command);
  }
  return v as T;
}
