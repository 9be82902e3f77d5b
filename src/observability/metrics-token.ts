import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * METRICS_TOKEN check for GET /metrics: `Authorization: Bearer <token>`, compared in constant time
 * (both sides hashed first, so neither the length nor a common prefix leaks through timing).
 */
export class MetricsTokenCheck {
  private readonly expected: Buffer | null;

  constructor(token: string | undefined) {
    this.expected = token ? digest(token) : null;
  }

  get required(): boolean {
    return this.expected !== null;
  }

  /** true when no token is configured, or the header carries exactly the configured one. */
  allows(authorization: string | string[] | undefined): boolean {
    if (this.expected === null) return true;
    const header = Array.isArray(authorization) ? authorization[0] : authorization;
    const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    const presented = digest(m ? m[1]! : '');
    return timingSafeEqual(presented, this.expected) && m !== null;
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
