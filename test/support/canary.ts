import { randomBytes } from 'node:crypto';

/**
 * Canary secrets and a scanner that looks for them in any text, in every encoding a leak tends to
 * take: raw, hex (lower and upper), base64 and base64url (at all three byte alignments, so a canary
 * embedded in a longer encoded blob — a Basic header, a JWT segment, a dumped Buffer — is found too),
 * and percent-encoding.
 */
export interface Canary {
  /** What it is, e.g. "provider key (primary)". */
  name: string;
  value: string;
}

export interface Needle {
  canary: Canary;
  encoding: string;
  text: string;
}

export interface Haystack {
  /** Where the text came from, e.g. "log", "response #12 POST /api/keys", "db api_keys". */
  source: string;
  text: string;
}

export interface Finding {
  canary: string;
  encoding: string;
  source: string;
  /** A little context around the hit (the needle itself replaced, so reports don't leak it further). */
  context: string;
}

/** A recognisable random secret: `${prefix}CANARY${random}` (only characters that survive every encoding). */
export function canaryValue(prefix: string, randomChars = 24): string {
  return `${prefix}CANARY${randomBytes(randomChars).toString('base64url').slice(0, randomChars)}`;
}

/** A valid Floodgate client API key (fg_ + 43 base64url characters) that contains CANARY. */
export function canaryApiKey(): string {
  const body = `CANARY${randomBytes(32).toString('base64url')}`.slice(0, 43);
  return `fg_${body}`;
}

function b64Variants(bytes: Buffer): { std: string; url: string }[] {
  const out: { std: string; url: string }[] = [];
  for (let k = 0; k < 3; k++) {
    const shifted = Buffer.concat([Buffer.alloc(k), bytes]);
    const encoded = shifted.toString('base64');
    // Characters that depend only on the canary's bytes: skip the first group when it holds
    // padding bytes, stop before the last (partial) group, which depends on what follows.
    const start = k === 0 ? 0 : 4;
    const end = Math.floor(shifted.length / 3) * 4;
    const std = encoded.slice(start, end);
    if (std.length >= 12) out.push({ std, url: std.replace(/\+/g, '-').replace(/\//g, '_') });
  }
  return out;
}

export function needlesFor(canary: Canary): Needle[] {
  const bytes = Buffer.from(canary.value, 'utf8');
  const needles: Needle[] = [
    { canary, encoding: 'raw', text: canary.value },
    { canary, encoding: 'hex', text: bytes.toString('hex') },
    { canary, encoding: 'HEX', text: bytes.toString('hex').toUpperCase() },
  ];
  const pct = encodeURIComponent(canary.value);
  if (pct !== canary.value) needles.push({ canary, encoding: 'percent', text: pct });
  for (const [i, v] of b64Variants(bytes).entries()) {
    needles.push({ canary, encoding: `base64@${i}`, text: v.std });
    if (v.url !== v.std) needles.push({ canary, encoding: `base64url@${i}`, text: v.url });
  }
  return needles;
}

/**
 * Every occurrence of every canary (in every encoding) in every haystack, except those `allowed`
 * says are expected (e.g. the one response that hands out a newly created key).
 */
export function scanForCanaries(
  haystacks: Haystack[],
  canaries: Canary[],
  allowed: (source: string, canary: Canary) => boolean = () => false,
): Finding[] {
  const needles = canaries.flatMap(needlesFor);
  const findings: Finding[] = [];
  for (const h of haystacks) {
    for (const n of needles) {
      let at = h.text.indexOf(n.text);
      while (at !== -1) {
        if (!allowed(h.source, n.canary)) {
          const before = h.text.slice(Math.max(0, at - 60), at);
          const after = h.text.slice(at + n.text.length, at + n.text.length + 60);
          findings.push({
            canary: n.canary.name,
            encoding: n.encoding,
            source: h.source,
            context: `${before}<${n.encoding} ${n.canary.name}>${after}`,
          });
        }
        at = h.text.indexOf(n.text, at + 1);
      }
    }
  }
  return findings;
}
