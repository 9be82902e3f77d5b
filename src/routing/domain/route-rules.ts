/**
 * Pure rules for routes (no I/O): the bounds the admin API and PROVIDERS_FILE enforce, the checks a
 * DTO's per-field decorators cannot express (the alias' characters, duplicate targets) and the
 * defaults a stored route gets.
 */

export const ROUTE_LIMITS = {
  modelMaxLength: 255,
  targetsMin: 1,
  targetsMax: 16,
  weightMin: 1,
  weightMax: 1000,
  tierMin: 1,
  tierMax: 10,
  timeoutMinMs: 1,
  timeoutMaxMs: 3_600_000,
  maxAttemptsMin: 1,
  maxAttemptsMax: 10,
} as const;

export const ROUTE_DEFAULTS = {
  weight: 1,
  tier: 1,
  breaker: 'auto',
  maxAttempts: 3,
  enabled: true,
} as const;

export const BREAKER_FORCES = ['auto', 'open', 'closed'] as const;

/** A problem with the field it is about, in the API's notation (`targets[1].model`). */
export interface RouteProblem {
  path: string;
  message: string;
}

// C0, DEL and C1 controls (a tab or a newline in a model name is a typo, never a name).
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** The alias clients send: 1..255 characters, no `*` (routes are exact names), no control characters. */
export function aliasProblem(model: string, path = 'model'): RouteProblem | null {
  if (model.length < 1 || model.length > ROUTE_LIMITS.modelMaxLength)
    return { path, message: `${path} must be 1-${ROUTE_LIMITS.modelMaxLength} characters` };
  if (model.includes('*'))
    return { path, message: `${path} must be an exact model name, not a pattern (no "*")` };
  if (CONTROL.test(model)) return { path, message: `${path} must not contain control characters` };
  if (model.trim() !== model) return { path, message: `${path} must not start or end with whitespace` };
  return null;
}

/** A target's identity as far as duplicates go. */
export interface TargetIdentity {
  providerId: string;
  model: string;
}

/** The second (and later) target naming a (provider, model) pair an earlier one names. */
export function duplicateTargetProblems(
  targets: readonly TargetIdentity[],
  path = 'targets',
): RouteProblem[] {
  const seen = new Map<string, number>();
  const out: RouteProblem[] = [];
  targets.forEach((t, i) => {
    const id = `${t.providerId.toLowerCase()}\u0000${t.model}`;
    const first = seen.get(id);
    if (first !== undefined) {
      out.push({
        path: `${path}[${i}]`,
        message: `${path}[${i}] repeats ${path}[${first}] (same provider and model)`,
      });
    } else {
      seen.set(id, i);
    }
  });
  return out;
}

/** The number of targets a route may have. */
export function targetCountProblem(count: number, path = 'targets'): RouteProblem | null {
  if (count < ROUTE_LIMITS.targetsMin || count > ROUTE_LIMITS.targetsMax)
    return {
      path,
      message: `${path} must have ${ROUTE_LIMITS.targetsMin}-${ROUTE_LIMITS.targetsMax} targets, got ${count}`,
    };
  return null;
}

/** Every rule above for a whole route (the per-field bounds are the DTO's). */
export function routeProblems(route: {
  model?: string;
  targets?: readonly TargetIdentity[];
}): RouteProblem[] {
  const out: RouteProblem[] = [];
  if (route.model !== undefined) {
    const p = aliasProblem(route.model);
    if (p) out.push(p);
  }
  if (route.targets !== undefined) {
    const c = targetCountProblem(route.targets.length);
    if (c) out.push(c);
    out.push(...duplicateTargetProblems(route.targets));
  }
  return out;
}
