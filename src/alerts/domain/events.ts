import { randomBytes } from 'node:crypto';

/**
 * The events a webhook can subscribe to. `budget.threshold` is emitted by budgets (issue 16 item 2)
 * through `AlertsService.emit`; the others come from KeyPool's outcomes and BreakerService's
 * transitions. `*` subscribes to every event, including ones added later.
 */
export const EVENT_TYPES = [
  'budget.threshold',
  'key.cooling',
  'key.broken',
  'breaker.opened',
  'breaker.closed',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];
export const ALL_EVENTS = '*';

/** The JSON body of every delivery (the bytes that are signed). */
export interface WebhookEvent {
  id: string;
  type: EventType;
  created_at: string;
  data: Record<string, unknown>;
}

/** The exact body text sent (and signed) for an event. */
export function eventBody(event: WebhookEvent): string {
  return JSON.stringify({ id: event.id, type: event.type, created_at: event.created_at, data: event.data });
}

export type Checked<T> = { ok: true; value: T } | { ok: false; message: string };

/** A subscription list: known names or `*`, at least one; duplicates dropped, order kept. */
export function checkEvents(events: readonly string[]): Checked<string[]> {
  if (events.length === 0) return { ok: false, message: 'events must name at least one event' };
  const unknown = events.filter((e) => e !== ALL_EVENTS && !(EVENT_TYPES as readonly string[]).includes(e));
  if (unknown.length > 0)
    return {
      ok: false,
      message: `events has unknown event ${unknown.map((e) => JSON.stringify(e)).join(', ')}; known: ${[...EVENT_TYPES, ALL_EVENTS].join(', ')}`,
    };
  const unique = [...new Set(events)];
  return { ok: true, value: unique.includes(ALL_EVENTS) ? [ALL_EVENTS] : unique };
}

export function subscribes(events: readonly string[], type: string): boolean {
  return events.includes(ALL_EVENTS) || events.includes(type);
}

/** Shape of a webhook URL (the addresses are judged by the SSRF guard): absolute http(s), no credentials, no fragment. */
export function checkWebhookUrlShape(raw: string): Checked<{ url: string; host: string }> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, message: 'url must be an absolute http(s) URL' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return { ok: false, message: `url must use http or https, got ${url.protocol.replace(/:$/, '')}` };
  if (url.username || url.password) return { ok: false, message: 'url must not contain credentials' };
  if (url.hash) return { ok: false, message: 'url must not have a fragment' };
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { ok: true, value: { url: url.toString(), host } };
}

export const SECRET_MIN = 16;
export const SECRET_MAX = 256;

/** A new signing secret: `whsec_` + 32 random bytes (base64url). */
export function generateSecret(): string {
  return `whsec_${randomBytes(32).toString('base64url')}`;
}

/** Enough of a secret to tell two apart, never enough to use it: `whsec_…abcd`. */
export function secretHint(secret: string): string {
  const prefix = secret.startsWith('whsec_') ? 'whsec_' : '';
  return `${prefix}…${secret.slice(-4)}`;
}

/** The AAD binding a sealed secret to its webhook row (a ciphertext copied onto another row does not open). */
export function webhookSecretAad(webhookId: string): string {
  return `webhook:${webhookId}`;
}

/**
 * Once per transition: a key that is already known to be cooling (until a later time) is not
 * announced again while its cooldown lasts, however many 429s or extensions arrive. In-process
 * first filter; the shared store's claim (alerts once-script) makes it once across instances.
 */
export class TransitionMemory {
  private readonly until = new Map<string, number>();

  constructor(private readonly maxEntries = 10_000) {}

  /** True when `key` is not remembered at `nowMs` (and remembers it until `untilMs`). */
  first(key: string, untilMs: number, nowMs: number): boolean {
    const known = this.until.get(key);
    if (known !== undefined && known > nowMs) {
      if (untilMs > known) this.until.set(key, untilMs);
      return false;
    }
    this.until.delete(key);
    this.until.set(key, untilMs);
    while (this.until.size > this.maxEntries) this.until.delete(this.until.keys().next().value!);
    return true;
  }
}
