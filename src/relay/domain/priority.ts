import { PRIORITY_RANK, type Priority, type Role } from '../../common/principal.js';
import { badRequest, forbidden, type Verdict } from './rejection.js';

// The one rank (1 = urgent … 4 = low, lower runs first) lives in common/principal.ts.
export { PRIORITY_RANK };

/** The highest priority a credential may ask for: its key's max_priority; JWT callers urgent for admins, high otherwise. */
export function priorityCeiling(caller: { role: Role; apiKey: { maxPriority: Priority } | null }): Priority {
  return caller.apiKey?.maxPriority ?? (caller.role === 'admin' ? 'urgent' : 'high');
}

/** `X-Priority`: urgent | high | normal | low, case-insensitive, default normal; above the ceiling → 403. */
export function parsePriority(header: string | string[] | undefined, ceiling: Priority): Verdict<Priority> {
  const value = (Array.isArray(header) ? header[0] : header)?.trim().toLowerCase() || 'normal';
  if (!(value in PRIORITY_RANK)) {
    return {
      ok: false,
      rejection: badRequest(
        `X-Priority must be one of urgent, high, normal, low, got ${JSON.stringify(value.slice(0, 32))}`,
        'X-Priority',
        'invalid_priority',
      ),
    };
  }
  const priority = value as Priority;
  if (PRIORITY_RANK[priority] < PRIORITY_RANK[ceiling]) {
    return {
      ok: false,
      rejection: forbidden(
        `X-Priority ${priority} is above the allowed maximum for this credential (${ceiling})`,
        'priority_not_allowed',
      ),
    };
  }
  return { ok: true, value: priority };
}
