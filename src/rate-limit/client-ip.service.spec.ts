import { describe, expect, it } from 'vitest';
import { ipRateLimitSubject, normaliseIp, resolveClientIp, TrustedProxies } from './client-ip.service.js';

describe('resolveClientIp', () => {
  const none = new TrustedProxies([]);
  const lb = new TrustedProxies(['10.0.0.0/8', '192.168.1.5', 'fd00::/8']);

  it('uses the socket peer when no proxy is trusted, whatever X-Forwarded-For says', () => {
    expect(resolveClientIp('203.0.113.9', '1.2.3.4', none)).toBe('203.0.113.9');
    expect(resolveClientIp('203.0.113.9', undefined, none)).toBe('203.0.113.9');
  });

  it('ignores a spoofed X-Forwarded-For from an untrusted peer', () => {
    expect(resolveClientIp('203.0.113.9', '10.0.0.1, 198.51.100.1', lb)).toBe('203.0.113.9');
    expect(resolveClientIp('8.8.8.8', ['1.1.1.1'], lb)).toBe('8.8.8.8');
  });

  it('takes the rightmost untrusted hop behind trusted proxies', () => {
    // client forged "6.6.6.6"; the real client 198.51.100.7 went through two of our proxies.
    expect(resolveClientIp('10.1.2.3', '6.6.6.6, 198.51.100.7, 10.9.9.9', lb)).toBe('198.51.100.7');
    expect(resolveClientIp('192.168.1.5', '198.51.100.7', lb)).toBe('198.51.100.7');
    // several header lines are one list, in order
    expect(resolveClientIp('10.1.2.3', ['6.6.6.6', '198.51.100.8, 10.0.0.2'], lb)).toBe('198.51.100.8');
  });

  it('does not trust neighbours of a single trusted address', () => {
    expect(resolveClientIp('192.168.1.6', '198.51.100.7', lb)).toBe('192.168.1.6');
  });

  it('uses the peer when a trusted proxy sent no X-Forwarded-For', () => {
    expect(resolveClientIp('10.0.0.1', undefined, lb)).toBe('10.0.0.1');
  });

  it('stops at the last trusted hop on a garbage entry, and when every hop is trusted', () => {
    expect(resolveClientIp('10.0.0.1', 'not-an-ip, 10.0.0.7', lb)).toBe('10.0.0.7');
    expect(resolveClientIp('10.0.0.1', '10.0.0.3, 10.0.0.2', lb)).toBe('10.0.0.3');
    expect(resolveClientIp('10.0.0.1', '1.2.3', lb)).toBe('10.0.0.1'); // legacy shorthand is not an address
  });

  it('handles IPv4-mapped peers, IPv6, ports and brackets', () => {
    expect(resolveClientIp('::ffff:10.0.0.1', '198.51.100.7', lb)).toBe('198.51.100.7');
    expect(resolveClientIp('::ffff:203.0.113.9', undefined, none)).toBe('203.0.113.9');
    expect(resolveClientIp('fd00::1', '[2001:db8::1]:443', lb)).toBe('2001:db8::1');
    expect(resolveClientIp('10.0.0.1', '198.51.100.7:51234', lb)).toBe('198.51.100.7');
    expect(resolveClientIp('2001:DB8:0:0::1', undefined, none)).toBe('2001:db8::1');
  });

  it('matches IPv4-mapped trusted ranges as IPv4', () => {
    const mapped = new TrustedProxies(['::ffff:10.0.0.0/104']);
    expect(mapped.contains('10.2.3.4')).toBe(true);
    expect(mapped.contains('11.2.3.4')).toBe(false);
  });
});

describe('ipRateLimitSubject / normaliseIp', () => {
  it('counts IPv4 per address and IPv6 per /64', () => {
    expect(ipRateLimitSubject('203.0.113.9')).toBe('203.0.113.9');
    expect(ipRateLimitSubject('2001:db8:1:2:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:1:2::/64');
    expect(ipRateLimitSubject('2001:db8:1:2::1')).toBe(ipRateLimitSubject('2001:db8:1:2:ffff::9'));
  });

  it('normalises or rejects', () => {
    expect(normaliseIp('2001:0DB8::0001')).toBe('2001:db8::1');
    expect(normaliseIp('::ffff:1.2.3.4')).toBe('1.2.3.4');
    expect(normaliseIp('1.2.3')).toBeNull();
    expect(normaliseIp('example.com')).toBeNull();
  });
});
