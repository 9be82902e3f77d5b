import { Inject, Injectable } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import ipaddr from 'ipaddr.js';
import { isIP } from 'node:net';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';

/**
 * Who is the client? Pure functions (the Relay and the audit trail may reuse them) plus a small
 * injectable bound to TRUSTED_PROXIES.
 *
 * Rules: the socket peer is the client unless the peer is a trusted proxy. Only then is
 * X-Forwarded-For read, from the right: each entry was appended by the hop to its right, so we walk
 * leftwards over trusted proxies and stop at the first address that is not one — the rightmost
 * untrusted hop. Everything left of it was written by the client and is never believed. A garbage
 * entry ends the walk at the last trusted hop (a proxy we trust wrote nonsense: we do not guess).
 */

type Address = ipaddr.IPv4 | ipaddr.IPv6;

/** Longest X-Forwarded-For chain we walk (more hops than this is not a real proxy chain). */
const MAX_HOPS = 32;

export class TrustedProxies {
  private readonly ranges: [Address, number][];

  constructor(cidrs: readonly string[]) {
    this.ranges = cidrs.map((cidr) => {
      if (cidr.includes('/')) {
        const [addr, bits] = ipaddr.parseCIDR(cidr);
        return normaliseRange(addr, bits);
      }
      const addr = parseStrict(cidr);
      if (!addr) throw new Error(`not an IP address or CIDR: ${cidr}`);
      return [addr, addr.kind() === 'ipv4' ? 32 : 128];
    });
  }

  get empty(): boolean {
    return this.ranges.length === 0;
  }

  contains(address: string): boolean {
    const addr = parseStrict(address);
    return addr ? this.containsParsed(addr) : false;
  }

  containsParsed(addr: Address): boolean {
    return this.ranges.some(([range, bits]) => range.kind() === addr.kind() && addr.match(range, bits));
  }
}

/** An IPv4-mapped IPv6 range (::ffff:10.0.0.0/104) is the IPv4 range it maps. */
function normaliseRange(addr: Address, bits: number): [Address, number] {
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) {
    return [(addr as ipaddr.IPv6).toIPv4Address(), bits - 96];
  }
  return [addr, bits];
}

/** Strict parse (dotted quads only, no `1.2.3` or octal forms); IPv4-mapped IPv6 becomes IPv4. */
function parseStrict(value: string): Address | null {
  let v = value.trim();
  // Tolerate the forms proxies write: "[2001:db8::1]:443", "203.0.113.7:51234".
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(v);
  if (bracketed) v = bracketed[1]!;
  else if (/^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(v)) v = v.slice(0, v.lastIndexOf(':'));
  const zone = v.indexOf('%');
  if (zone > 0) v = v.slice(0, zone);
  if (isIP(v) === 0) return null;
  try {
    return ipaddr.process(v);
  } catch {
    return null;
  }
}

/** Canonical text of an address (IPv4 dotted quad, IPv6 RFC 5952), or null when it is not one. */
export function normaliseIp(value: string): string | null {
  return parseStrict(value)?.toString() ?? null;
}

/**
 * The client address for a request: `peer` is the socket address, `forwardedFor` the raw
 * X-Forwarded-For header value(s).
 */
export function resolveClientIp(
  peer: string | undefined,
  forwardedFor: string | string[] | undefined,
  trusted: TrustedProxies,
): string {
  if (!peer) return peer ?? 'unknown';
  // No proxy to believe: the socket's address, parsed once per address.
  if (trusted.empty || forwardedFor === undefined) return canonicalPeer(peer) ?? peer;
  const peerAddr = parseStrict(peer);
  if (!peerAddr) return peer;
  if (!trusted.containsParsed(peerAddr)) return peerAddr.toString();
  const raw = Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor;
  const hops = raw.split(',');
  let lastTrusted: Address = peerAddr;
  for (let i = hops.length - 1, walked = 0; i >= 0 && walked < MAX_HOPS; i--, walked++) {
    const hop = hops[i]!.trim();
    if (hop === '') continue;
    const addr = parseStrict(hop);
    if (!addr) return lastTrusted.toString();
    if (!trusted.containsParsed(addr)) return addr.toString();
    lastTrusted = addr;
  }
  // Every hop is one of ours: the leftmost one we reached is the closest thing to a client.
  return lastTrusted.toString();
}

/**
 * The identity the IP policy counts: the address itself for IPv4, the /64 network for IPv6 (one
 * end site usually owns a whole /64, so per-address limits would be free to dodge).
 */
export function ipRateLimitSubject(ip: string): string {
  let subject = subjects.get(ip);
  if (subject === undefined) {
    subject = rateLimitSubjectOf(ip);
    remember(subjects, ip, subject);
  }
  return subject;
}

/**
 * Per-request parsing memoised (a client's address is the same on every request of its
 * connections): address text → canonical address / rate-limit subject. Bounded: cleared when full.
 */
const MEMO_MAX = 4096;
const subjects = new Map<string, string>();
const peers = new Map<string, string | null>();
function remember<V>(memo: Map<string, V>, key: string, value: V): void {
  if (memo.size >= MEMO_MAX) memo.clear();
  memo.set(key, value);
}

/** The canonical text of a socket's address (null: not an address). */
function canonicalPeer(peer: string): string | null {
  let canonical = peers.get(peer);
  if (canonical === undefined) {
    canonical = parseStrict(peer)?.toString() ?? null;
    remember(peers, peer, canonical);
  }
  return canonical;
}

function rateLimitSubjectOf(ip: string): string {
  const addr = parseStrict(ip);
  if (!addr) return ip;
  if (addr.kind() === 'ipv4') return addr.toString();
  const bytes = addr.toByteArray();
  for (let i = 8; i < 16; i++) bytes[i] = 0;
  return `${ipaddr.fromByteArray(bytes).toString()}/64`;
}

/** Resolves request client IPs against TRUSTED_PROXIES (config.http.trustedProxies). */
@Injectable()
export class ClientIpService {
  readonly trusted: TrustedProxies;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.trusted = new TrustedProxies(config.http.trustedProxies);
  }

  resolve(request: FastifyRequest): string {
    return resolveClientIp(
      request.socket?.remoteAddress ?? request.ip,
      request.headers['x-forwarded-for'],
      this.trusted,
    );
  }
}
