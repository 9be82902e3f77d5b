import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { normalizeBaseUrl } from './client.js';
import { optInt, optList, parseCommandArgs, splitCommand } from './command.js';
import { GatewayError, UsageError } from './errors.js';
import { run } from './main.js';
import { cell, duration, renderTable, shortTime } from './output.js';

function io(env: Record<string, string> = {}) {
  let stdout = '';
  let stderr = '';
  return {
    io: {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      env,
      stdin: Readable.from([]),
    },
    out: () => stdout,
    err: () => stderr,
  };
}

describe('splitCommand', () => {
  it('takes the command words wherever global options are, leaving options and positionals in order', () => {
    expect(splitCommand(['--json', 'keys', 'list', '--user', 'x'], 2)).toEqual({
      words: ['keys', 'list'],
      rest: ['--json', '--user', 'x'],
    });
    expect(splitCommand(['--url', 'http://h', 'status'], 1)).toEqual({
      words: ['status'],
      rest: ['--url', 'http://h'],
    });
    expect(splitCommand(['keys', 'revoke', 'a', 'b'], 2)).toEqual({
      words: ['keys', 'revoke'],
      rest: ['a', 'b'],
    });
    expect(splitCommand(['--', 'keys'], 2)).toEqual({ words: [], rest: ['--', 'keys'] });
  });
});

describe('parseCommandArgs', () => {
  const spec = {
    name: 'x y',
    options: {
      rpm: { type: 'string' as const, help: '' },
      tag: { type: 'string' as const, multiple: true, help: '' },
    },
    positionals: { min: 1, max: 1 },
  };

  it('accepts the command options and the global ones', () => {
    expect(parseCommandArgs(spec, ['id', '--rpm', '5', '--json', '--url', 'http://h'])).toMatchObject({
      values: { rpm: '5', json: true, url: 'http://h' },
      positionals: ['id'],
    });
  });

  it.each([
    [['id', '--nope'], 'unknown option --nope'],
    [['id', '--rpm'], 'option --rpm needs a value'],
    [['id', '--json=1'], 'option --json takes no value'],
    [[], 'missing argument'],
    [['a', 'b'], 'unexpected argument "b"'],
  ])('%j → UsageError %s', (args, message) => {
    expect(() => parseCommandArgs(spec, args)).toThrow(new UsageError(message, 'x y'));
  });

  it('--help skips the positional checks', () => {
    expect(parseCommandArgs(spec, ['--help']).values.help).toBe(true);
  });
});

describe('option readers', () => {
  it('optInt: integers in range, "none" only when allowed', () => {
    expect(optInt({ n: '60' }, 'n', 'c', { min: 1, max: 100 })).toBe(60);
    expect(optInt({}, 'n', 'c', { min: 1, max: 100 })).toBeUndefined();
    expect(optInt({ n: 'none' }, 'n', 'c', { min: 1, max: 100, allowNone: true })).toBeNull();
    for (const bad of ['0', '101', '1.5', '-1', 'abc', 'none', ''])
      expect(() => optInt({ n: bad }, 'n', 'c', { min: 1, max: 100 })).toThrow(UsageError);
  });

  it('optList: repeated and comma-separated, blanks dropped', () => {
    expect(optList({ m: ['a,b', ' c ', ','] }, 'm')).toEqual(['a', 'b', 'c']);
    expect(optList({}, 'm')).toBeUndefined();
  });
});

describe('output', () => {
  it('renders aligned tables with "-" for missing values and right-aligned numbers', () => {
    expect(
      renderTable(
        [
          { header: 'NAME', value: 'name' },
          { header: 'RPM', value: 'rpm', align: 'right' },
          { header: 'MODELS', value: 'models' },
        ],
        [
          { name: 'openai', rpm: 500, models: ['a', 'b'] },
          { name: 'x', rpm: null, models: [] },
        ],
      ),
    ).toEqual(['NAME    RPM  MODELS', 'openai  500  a,b', 'x         -  -']);
  });

  it('cells, times and durations', () => {
    expect(cell('two\nlines')).toBe('two lines');
    expect(cell(undefined)).toBe('-');
    expect(shortTime('2025-11-22T10:00:05.000Z')).toBe('2025-11-22 10:00:05Z');
    expect(shortTime(null)).toBeNull();
    expect([0, 42, 90, 3600, 5400, 3605, 90_061].map(duration)).toEqual([
      '0s',
      '42s',
      '1m 30s',
      '1h',
      '1h 30m',
      '1h',
      '1d 1h',
    ]);
  });
});

describe('errors and URLs', () => {
  it('GatewayError details name the status, type, code, field and request id', () => {
    expect(
      new GatewayError('m', 400, 'invalid_request_error', 'validation_failed', 'name', 'r-1').details(),
    ).toBe('HTTP 400, invalid_request_error (validation_failed), field name, request id r-1');
    expect(new GatewayError('m', 502, null, null, null, null).details()).toBe('HTTP 502');
  });

  it('normalizeBaseUrl keeps http(s) URLs without a trailing slash and refuses the rest', () => {
    expect(normalizeBaseUrl('http://localhost:3000/', '--url')).toBe('http://localhost:3000');
    expect(normalizeBaseUrl('https://gw.example.com/prefix/', '--url')).toBe('https://gw.example.com/prefix');
    expect(() => normalizeBaseUrl('localhost:3000', '--url')).toThrow(UsageError);
    expect(() => normalizeBaseUrl('file:///etc', 'FLOODGATE_URL')).toThrow(
      /FLOODGATE_URL must be an http\(s\) URL/,
    );
  });
});

describe('run (in process)', () => {
  it('help goes to stdout with exit 0; usage errors to stderr with exit 2', async () => {
    const help = io();
    expect(await run(['help', 'keys'], help.io)).toBe(0);
    expect(help.out()).toContain('floodgate keys create');
    const bad = io({ FLOODGATE_ADMIN_KEY: 'fg_x' });
    expect(await run(['keys', 'create'], bad.io)).toBe(2);
    expect(bad.err()).toBe('floodgate: --name is required\n(see floodgate keys create --help)\n');
    expect(bad.out()).toBe('');
  });
});
