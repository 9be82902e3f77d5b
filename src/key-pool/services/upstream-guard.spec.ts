import { describe, expect, it } from 'vitest';
import {
  checkBaseUrl,
  classifyAddress,
  guardedLookup,
  judgeAddress,
  normaliseHost,
  UpstreamAddressError,
} from './upstream-guard.service.js';

/** Every spelling of a forbidden address we know of, and what it must classify as. */
const TABLE: [string, string][] = [
  // cloud metadata / link-local, ALWAYS refused
  ['169.254.169.254', 'link_local'],
  ['2852039166', 'link_local'], // decimal
  ['0xA9FEA9FE', 'link_local'], // hex
  ['0xa9.0xfe.0xa9.0xfe', 'link_local'], // dotted hex
  ['0251.0376.0251.0376', 'link_local'], // octal
  ['169.254.43518', 'link_local'], // 3-part
  ['169.254.169.254.', 'link_local'], // trailing dot
  ['[::ffff:169.254.169.254]', 'link_local'], // IPv4-mapped IPv6
  ['::ffff:a9fe:a9fe', 'link_local'], // IPv4-mapped, hex
  ['0:0:0:0:0:ffff:169.254.169.254', 'link_local'],
  ['::ffff:0:169.254.169.254', 'link_local'], // RFC 6145 translated
  ['::169.254.169.254', 'link_local'], // IPv4-compatible
  ['64:ff9b::169.254.169.254', 'link_local'], // NAT64
  ['2002:a9fe:a9fe::1', 'link_local'], // 6to4
  ['fe80::1', 'link_local'],
  ['fe80::1%eth0', 'link_local'],
  ['fd00:ec2::254', 'metadata'], // AWS IMDS over IPv6
  ['[fd00:ec2::254]', 'metadata'],
  ['100.100.100.200', 'metadata'], // Alibaba
  ['168.63.129.16', 'metadata'], // Azure wireserver
  ['0.0.0.0', 'unspecified'],
  ['0', 'unspecified'],
  ['::', 'unspecified'],
  ['255.255.255.255', 'reserved'],
  ['224.0.0.1', 'reserved'],
  ['240.0.0.1', 'reserved'],
  ['ff02::1', 'reserved'],
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'reserved'], // Teredo
  // private / loopback: refused unless ALLOW_PRIVATE_UPSTREAMS
  ['127.0.0.1', 'loopback'],
  ['127.1', 'loopback'],
  ['2130706433', 'loopback'],
  ['0x7f000001', 'loopback'],
  ['017700000001', 'loopback'],
  ['::1', 'loopback'],
  ['[::1]', 'loopback'],
  ['::ffff:127.0.0.1', 'loopback'],
  ['10.1.2.3', 'private'],
  ['172.16.0.1', 'private'],
  ['172.31.255.255', 'private'],
  ['192.168.1.1', 'private'],
  ['100.64.0.1', 'private'], // CGNAT
  ['198.18.0.1', 'private'], // benchmarking
  ['fc00::1', 'private'],
  ['fd12:3456::1', 'private'],
  ['fec0::1', 'private'],
  ['::ffff:10.0.0.1', 'private'],
  ['64:ff9b:1::8.8.8.8', 'private'], // local-use NAT64
  // public
  ['8.8.8.8', 'public'],
  ['172.32.0.1', 'public'],
  ['2606:4700:4700::1111', 'public'],
  ['::ffff:8.8.8.8', 'public'],
  ['64:ff9b::8.8.8.8', 'public'],
];

describe('classifyAddress', () => {
  it.each(TABLE)('%s → %s', (spelling, cls) => {
    expect(classifyAddress(spelling)).toBe(cls);
  });

  it('host names are not addresses', () => {
    expect(classifyAddress('api.openai.com')).toBeNull();
    expect(normaliseHost('2852039166')).toBe('169.254.169.254');
  });
});

describe('judgeAddress', () => {
  it.each(TABLE)('%s (%s) with and without ALLOW_PRIVATE_UPSTREAMS', (spelling, cls) => {
    const strict = judgeAddress(spelling, false);
    const lax = judgeAddress(spelling, true);
    expect(strict.allowed).toBe(cls === 'public');
    expect(lax.allowed).toBe(['public', 'private', 'loopback'].includes(cls));
    if (!strict.allowed) expect(strict.reason).toMatch(/refused|ALLOW_PRIVATE_UPSTREAMS/);
  });
});

describe('checkBaseUrl (save time)', () => {
  const noDns = async (): Promise<string[]> => {
    throw new Error('no DNS in this test');
  };

  it.each([
    'http://169.254.169.254/latest/meta-data',
    'http://2852039166/',
    'http://0xA9FEA9FE/',
    'http://0251.0376.0251.0376/',
    'http://[::ffff:169.254.169.254]/',
    'http://[fd00:ec2::254]/',
    'http://[fe80::1]/',
    'http://0.0.0.0:8080/',
  ])('%s is refused even with ALLOW_PRIVATE_UPSTREAMS', async (url) => {
    const r = await checkBaseUrl(url, true, noDns);
    expect(r).toMatchObject({ ok: false, code: 'base_url_forbidden' });
  });

  it.each(['http://127.0.0.1:8080/v1', 'http://[::1]/v1', 'http://10.0.0.5/v1', 'http://2130706433/'])(
    '%s is refused without ALLOW_PRIVATE_UPSTREAMS and allowed with it',
    async (url) => {
      expect(await checkBaseUrl(url, false, noDns)).toMatchObject({ ok: false, code: 'base_url_forbidden' });
      expect(await checkBaseUrl(url, true, noDns)).toMatchObject({ ok: true });
    },
  );

  it('host names: every resolved address must pass', async () => {
    const resolveTo =
      (...a: string[]) =>
      async () =>
        a;
    expect(await checkBaseUrl('https://api.example.com/v1', false, resolveTo('93.184.216.34'))).toEqual({
      ok: true,
      url: 'https://api.example.com/v1',
      addresses: ['93.184.216.34'],
    });
    const mixed = await checkBaseUrl(
      'https://rebind.example.com/v1',
      false,
      resolveTo('93.184.216.34', '169.254.169.254'),
    );
    expect(mixed).toMatchObject({ ok: false, code: 'base_url_forbidden' });
    expect((mixed as { message: string }).message).toContain('rebind.example.com resolves to it');
    expect(await checkBaseUrl('https://nowhere.invalid/v1', false, noDns)).toMatchObject({
      ok: false,
      code: 'base_url_unresolvable',
    });
    // without DNS (PROVIDERS_FILE at start) host names pass; literals are still judged
    expect(await checkBaseUrl('https://api.example.com/v1', false, null)).toMatchObject({ ok: true });
    expect(await checkBaseUrl('http://169.254.169.254/', true, null)).toMatchObject({ ok: false });
  });

  it.each([
    ['ftp://example.com/', /http or https/],
    ['file:///etc/passwd', /http or https/],
    ['gopher://127.0.0.1:6379/_INFO', /http or https/],
    ['not a url', /absolute http\(s\) URL/],
    ['https://user:pass@api.example.com/v1', /credentials/],
    ['https://api.example.com/v1?key=1', /query or fragment/],
  ])('%s is invalid', async (url, message) => {
    const r = await checkBaseUrl(url, true, async () => ['93.184.216.34']);
    expect(r).toMatchObject({ ok: false, code: 'base_url_invalid' });
    expect((r as { message: string }).message).toMatch(message);
  });
});

describe('guardedLookup (connect time)', () => {
  const fakeDns =
    (...addresses: string[]) =>
    (
      _host: string,
      _opts: unknown,
      cb: (err: Error | null, result: { address: string; family: number }[]) => void,
    ) =>
      cb(
        null,
        addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
      );

  it('passes public answers through (single and all)', async () => {
    const lookup = guardedLookup(false, fakeDns('93.184.216.34') as never);
    const single = await new Promise<unknown[]>((resolve) =>
      lookup('x.example', {}, (...args) => resolve(args)),
    );
    expect(single).toEqual([null, '93.184.216.34', 4]);
    const all = await new Promise<unknown[]>((resolve) =>
      lookup('x.example', { all: true }, (...args) => resolve(args)),
    );
    expect(all).toEqual([null, [{ address: '93.184.216.34', family: 4 }]]);
  });

  it('refuses a rebinding answer', async () => {
    const lookup = guardedLookup(false, fakeDns('127.0.0.1') as never);
    const [err] = await new Promise<unknown[]>((resolve) =>
      lookup('rebind.example', {}, (...args) => resolve(args)),
    );
    expect(err).toBeInstanceOf(UpstreamAddressError);
    const lookupMeta = guardedLookup(true, fakeDns('::ffff:169.254.169.254') as never);
    const [err2] = await new Promise<unknown[]>((resolve) =>
      lookupMeta('rebind.example', { all: true }, (...args) => resolve(args)),
    );
    expect(err2).toBeInstanceOf(UpstreamAddressError);
  });
});
