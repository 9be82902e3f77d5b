import { PRIORITY_RANK, type Priority } from '../../common/principal.js';

/**
 * The pure rules of teams (docs/auth.md "Teams"): how a team's allowed models and max priority fold
 * into a key's, and the budget's money conversion. No Nest, no database.
 */

export type TeamRole = 'member' | 'team_admin';
export const TEAM_ROLES: readonly TeamRole[] = ['member', 'team_admin'];
export type BudgetPeriod = 'day' | 'week' | 'month' | 'total';
export const BUDGET_PERIODS: readonly BudgetPeriod[] = ['day', 'week', 'month', 'total'];

/** Glob semantics of allowed_models (the relay's model-router): `*` matches any run of characters. */
function globMatches(pattern: string, text: string): boolean {
  if (!pattern.includes('*')) return pattern === text;
  const re = new RegExp(
    `^${pattern
      .split('*')
      .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
  return re.test(text);
}

function matchesAny(list: readonly string[], text: string): boolean {
  return list.some((entry) => globMatches(entry, text));
}

/**
 * One list that allows a model exactly when both `key` and `team` allow it (null = all), so the
 * relay's one check (`principal.apiKey.allowedModels`) applies both. An entry of either list is kept
 * when the other list allows everything it matches: an id when the other list matches it, a pattern
 * `q` when some pattern `p` of the other list contains it (p matches q's own text, its `*`
 * included — exact for globs: q's text is one of q's matches, and p's `*` absorb whatever q's do).
 * The one thing a single glob list cannot say is the overlap of two patterns neither of which
 * contains the other (`gpt-*` and `*-mini`): such a pair contributes nothing, so a model allowed only
 * through it is refused — list it by id on either side (documented).
 */
export function intersectAllowedModels(
  key: readonly string[] | null,
  team: readonly string[] | null,
): string[] | null {
  if (team === null) return key === null ? null : [...key];
  if (key === null) return [...team];
  const out = new Set<string>();
  for (const entry of key) if (matchesAny(team, entry)) out.add(entry);
  for (const entry of team) if (matchesAny(key, entry)) out.add(entry);
  return [...out];
}

/** The lower of two priority ceilings (the tighter one applies). */
export function tighterPriority(a: Priority, b: Priority): Priority {
  return PRIORITY_RANK[a] >= PRIORITY_RANK[b] ? a : b;
}

export const MICROS_PER_USD = 1_000_000;
/** USD with at most 6 decimals → integer micro-dollars (money is never stored as a float). */
export function usdToMicros(usd: number): number {
  return Math.round(usd * MICROS_PER_USD);
}
export function microsToUsd(micros: number): number {
  return micros / MICROS_PER_USD;
}

/**
 * A key's team is its owner's team, always (docs/auth.md): a `team_id` given at creation must be
 * the owner's team; omitted, it is the owner's team (null when the owner is in none). Returns the
 * team id to store, or an error message naming the problem.
 */
export function keyTeam(
  requested: string | null | undefined,
  ownerTeamId: string | null,
): { ok: true; teamId: string | null } | { ok: false; message: string } {
  if (requested === undefined) return { ok: true, teamId: ownerTeamId };
  if (requested === ownerTeamId) return { ok: true, teamId: ownerTeamId };
  return {
    ok: false,
    message:
      ownerTeamId === null
        ? "team_id must be the owner's team, and the owner is in no team (add them as a member first)"
        : `team_id must be the owner's team (${ownerTeamId}): a member's keys always count against their team`,
  };
}
