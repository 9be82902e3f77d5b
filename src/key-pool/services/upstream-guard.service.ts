import { Inject, Injectable } from '@nestjs/common';
import ipaddr from 'ipaddr.js';
import dns, { type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import { buildConnector } from 'undici';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';

/**
 * SSRF guard for provider base URLs, applied twice:
 * - at save time (`checkBaseUrl`): scheme, credentials, and every address the host resolves to;
 * - at connect time (`connector()` / `lookup`, for the relay's undici pools): the address actually
 *   dialled is checked again, so a DNS answer that changes after the save (DNS rebinding) cannot
 *   reach a forbidden address.
 *
 * Classes: `link_local` (169.254.0.0/16, fe80::/10), `metadata` (cloud metadata addresses outside
 * link-local: fd00:ec2::254, 100.100.100.200, 168.63.129.16), `unspecified` (0.0.0.0/8, ::) and
 * `reserved` (multicast, broadcast, 240/4, documentation, Teredo, discard) are ALWAYS refused.
 * `loopback` and `private` (RFC 1918, CGNAT 100.64/10, benchmarking 198.18/15, fc00::/7, fec0::/10)
 * are refused unless ALLOW_PRIVATE_UPSTREAMS. IPv6 forms that embed an IPv4 address
 * (::ffff:a.b.c.d, ::a.b.c.d, ::ffff:0:a.b.c.d, 64:ff9b::/96, 2002::/16) are judged by that address.
 * Odd IPv4 spellings (2852039166, 0xA9FEA9FE, 0251.0376.0251.0376, 169.254.43518) are normalised by
 * the WHATWG URL parser before classification.
 */
export type AddressClass =
  'public' | 'private' | 'loopback' | 'link_local' | 'metadata' | 'unspecified' | 'reserved';

const ALWAYS_REFUSED: ReadonlySet<AddressClass> = new Set([
  'link_local',
  'metadata',
  'unspecified',
  'reserved',
]);
const PRIVATE_CLASSES: ReadonlySet<AddressClass> = new Set(['private', 'loopback']);

const METADATA_V4 = new Set(['100.100.100.200', '168.63.129.16']);
const METADATA_V6 = [ipaddr.IPv6.parse('fd00:ec2::254')];

function classifyV4(addr: ipaddr.IPv4): AddressClass {
  if (METADATA_V4.has(addr.toString())) return 'metadata';
  switch (addr.range()) {
    case 'linkLocal':
      return 'link_local';
    case 'loopback':
      return 'loopback';
    case 'unspecified':
      return 'unspecified';
    case 'private':
    case 'carrierGradeNat':
      return 'private';
    case 'unicast':
      return 'public';
    default:
      // broadcast, multicast, reserved (incl. 198.18/15 benchmarking and TEST-NETs), as112, amt
      return addr.match(ipaddr.IPv4.parse('198.18.0.0'), 15) ? 'private' : 'reserved';
  }
}

function embeddedV4(addr: ipaddr.IPv6): ipaddr.IPv4 | null {
  const p = addr.parts;
  const v4 = (hi: number, lo: number) => new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
  const zeros = (from: number, to: number) => p.slice(from, to).every((x) => x === 0);
  if (zeros(0, 5) && p[5] === 0xffff) return v4(p[6]!, p[7]!); // ::ffff:a.b.c.d (IPv4-mapped)
  if (zeros(0, 4) && p[4] === 0xffff && p[5] === 0) return v4(p[6]!, p[7]!); // ::ffff:0:a.b.c.d (RFC 6145)
  if (zeros(0, 6) && (p[6] !== 0 || p[7]! > 1)) return v4(p[6]!, p[7]!); // ::a.b.c.d (IPv4-compatible)
  if (p[0] === 0x64 && p[1] === 0xff9b && zeros(2, 6)) return v4(p[6]!, p[7]!); // NAT64 well-known prefix
  if (p[0] === 0x64 && p[1] === 0xff9b && p[2] === 1) return v4(p[6]!, p[7]!); // NAT64 local-use prefix
  if (p[0] === 0x2002) return v4(p[1]!, p[2]!); // 6to4
  return null;
}

function classifyV6(addr: ipaddr.IPv6): AddressClass {
  if (METADATA_V6.some((m) => m.toNormalizedString() === addr.toNormalizedString())) return 'metadata';
  const inner = embeddedV4(addr);
  if (inner) {
    const c = classifyV4(inner);
    // Local-use NAT64 (64:ff9b:1::/48) is a private translator even for public IPv4 targets.
    return c === 'public' && addr.parts[2] === 1 && addr.parts[0] === 0x64 ? 'private' : c;
  }
  switch (addr.range() as string) {
    case 'unspecified':
      return 'unspecified';
    case 'loopback':
      return 'loopback';
    case 'linkLocal':
      return 'link_local';
    case 'uniqueLocal':
    case 'deprecatedSiteLocal':
      return 'private';
    case 'unicast':
      return 'public';
    default:
      return 'reserved'; // multicast, teredo, discard, documentation, orchid, benchmarking, …
  }
}

/** Normalises any host spelling the WHATWG URL parser accepts (decimal, hex, octal, short IPv4; bracketed IPv6). */
export function normaliseHost(host: string): string {
  let h = host.trim();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  h = h.replace(/%.*$/, ''); // IPv6 zone id
  if (isIP(h) === 6) return ipaddr.IPv6.parse(h).toNormalizedString();
  try {
    const parsed = new URL(`http://${h}/`).hostname;
    return parsed.startsWith('[') ? parsed.slice(1, -1) : parsed;
  } catch {
    return h;
  }
}

/** The class of an IP address in any spelling; null when the text is not an IP address. */
export function classifyAddress(address: string): AddressClass | null {
  const host = normaliseHost(address);
  const family = isIP(host);
  if (family === 4) return classifyV4(ipaddr.IPv4.parse(host));
  if (family === 6) return classifyV6(ipaddr.IPv6.parse(host));
  return null;
}

export interface AddressVerdict {
  allowed: boolean;
  class: AddressClass;
  /** Human reason when refused ("169.254.169.254 is link-local (cloud metadata) and is always refused"). */
  reason: string | null;
}

const CLASS_WORDS: Record<AddressClass, string> = {
  public: 'public',
  private: 'a private address',
  loopback: 'a loopback address',
  link_local: 'link-local (cloud metadata range)',
  metadata: 'a cloud metadata address',
  unspecified: 'the unspecified address',
  reserved: 'a reserved, multicast or special-purpose address',
};

export function judgeAddress(address: string, allowPrivate: boolean): AddressVerdict {
  const cls = classifyAddress(address);
  if (cls === null) return { allowed: false, class: 'reserved', reason: `${address} is not an IP address` };
  if (ALWAYS_REFUSED.has(cls))
    return { allowed: false, class: cls, reason: `${address} is ${CLASS_WORDS[cls]} and is always refused` };
  if (PRIVATE_CLASSES.has(cls) && !allowPrivate) {
    return {
      allowed: false,
      class: cls,
      reason: `${address} is ${CLASS_WORDS[cls]}; set ALLOW_PRIVATE_UPSTREAMS=true to allow it`,
    };
  }
  return { allowed: true, class: cls, reason: null };
}

/** Raised by the guarded lookup/connector: the upstream address is forbidden. */
export class UpstreamAddressError extends Error {
  readonly code = 'UPSTREAM_ADDRESS_REFUSED';
  constructor(message: string) {
    super(message);
    this.name = 'UpstreamAddressError';
  }
}

export type Resolver = (hostname: string) => Promise<string[]>;

export const systemResolver: Resolver = async (hostname) =>
  (await dns.promises.lookup(hostname, { all: true, verbatim: true })).map((a) => a.address);

export type BaseUrlCheck =
  | { ok: true; url: string; addresses: string[] }
  | { ok: false; code: 'base_url_invalid' | 'base_url_forbidden' | 'base_url_unresolvable'; message: string };

/**
 * Save-time check of a provider base URL. `resolve: null` skips DNS for host names (PROVIDERS_FILE at
 * start, where DNS may not be up yet — the connect-time guard still applies); IP literals are always checked.
 */
export async function checkBaseUrl(
  raw: string,
  allowPrivate: boolean,
  resolve: Resolver | null = systemResolver,
): Promise<BaseUrlCheck> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, code: 'base_url_invalid', message: 'base_url must be an absolute http(s) URL' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return {
      ok: false,
      code: 'base_url_invalid',
      message: `base_url must use http or https, got ${url.protocol.replace(/:$/, '')}`,
    };
  }
  if (url.username || url.password) {
    return {
      ok: false,
      code: 'base_url_invalid',
      message: 'base_url must not contain credentials (put them in an upstream key)',
    };
  }
  if (url.search || url.hash)
    return { ok: false, code: 'base_url_invalid', message: 'base_url must not have a query or fragment' };
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const normalised = url.toString().replace(/\/+$/, '');
  let addresses: string[];
  if (isIP(host) !== 0) {
    addresses = [host];
  } else if (resolve === null) {
    return { ok: true, url: normalised, addresses: [] };
  } else {
    try {
      addresses = await resolve(host);
    } catch {
      addresses = [];
    }
    if (addresses.length === 0)
      return { ok: false, code: 'base_url_unresolvable', message: `base_url host ${host} does not resolve` };
  }
  for (const a of addresses) {
    const verdict = judgeAddress(a, allowPrivate);
    if (!verdict.allowed) {
      const via = a === host ? '' : ` (${host} resolves to it)`;
      return {
        ok: false,
        code: 'base_url_forbidden',
        message: `base_url is refused: ${verdict.reason}${via}`,
      };
    }
  }
  return { ok: true, url: normalised, addresses };
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;
export type LookupFunction = (hostname: string, options: LookupOptions, callback: LookupCallback) => void;

/**
 * A `lookup` for net/tls/undici that refuses forbidden answers. Every address of the answer must pass
 * (one bad record poisons the answer: a rebinding server may alternate).
 */
export function guardedLookup(
  allowPrivate: boolean,
  base: LookupFunction = dns.lookup as unknown as LookupFunction,
): LookupFunction {
  return (hostname, options, callback) => {
    base(hostname, { ...options, all: true }, (err, result) => {
      if (err) return callback(err, options.all ? [] : '', undefined);
      const list = result as LookupAddress[];
      for (const a of list) {
        const verdict = judgeAddress(a.address, allowPrivate);
        if (!verdict.allowed) {
          return callback(
            new UpstreamAddressError(`upstream ${hostname} refused: ${verdict.reason}`),
            options.all ? [] : '',
            undefined,
          );
        }
      }
      if (options.all) return callback(null, list);
      const first = list[0];
      if (!first)
        return callback(
          Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }),
          '',
          undefined,
        );
      callback(null, first.address, first.family);
    });
  };
}

/**
 * An undici `connect` function for the relay's pools/agents: IP-literal origins are judged directly
 * (net.connect skips lookup for them), host names through `guardedLookup`.
 * Usage: `new Pool(origin, { connect: guardedConnector({ allowPrivate }) })`.
 */
export function guardedConnector(options: {
  allowPrivate: boolean;
  lookup?: LookupFunction;
  connect?: buildConnector.BuildOptions;
}): buildConnector.connector {
  const inner = buildConnector({
    ...(options.connect ?? {}),
    lookup: guardedLookup(options.allowPrivate, options.lookup),
  } as buildConnector.BuildOptions);
  return (opts, callback) => {
    const host = opts.hostname.startsWith('[') ? opts.hostname.slice(1, -1) : opts.hostname;
    if (isIP(host) !== 0) {
      const verdict = judgeAddress(host, options.allowPrivate);
      if (!verdict.allowed) {
        callback(new UpstreamAddressError(`upstream ${host} refused: ${verdict.reason}`), null);
        return;
      }
    }
    inner(opts, callback);
  };
}

/** The guard bound to this gateway's ALLOW_PRIVATE_UPSTREAMS, for the admin API and the relay. */
@Injectable()
export class UpstreamGuardService {
  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  get allowPrivate(): boolean {
    return this.config.upstream.allowPrivate;
  }

  checkBaseUrl(raw: string, resolve: Resolver | null = systemResolver): Promise<BaseUrlCheck> {
    return checkBaseUrl(raw, this.allowPrivate, resolve);
  }

  /** undici `connect` option enforcing the same rules on every connection (DNS-rebinding safe). */
  connector(connect?: buildConnector.BuildOptions): buildConnector.connector {
    return guardedConnector({ allowPrivate: this.allowPrivate, connect });
  }

  lookup(): LookupFunction {
    return guardedLookup(this.allowPrivate);
  }
}
