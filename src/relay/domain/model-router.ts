import type { ProviderKind } from '../../key-pool/key-pool.types.js';
/**
 * model → provider. Exact ids win over patterns; among patterns the most specific wins (longest
 * literal text, then fewest wildcards), then the provider name, so routing never depends on the
 * order rows come back from the database.
 */
export interface RoutableProvider {
  id: string;
  name: string;
  models: string[];
  /** What API it speaks (`openai` | `anthropic`): which exchange carries a request to it. */
  kind: ProviderKind;
}

export interface Route<P extends RoutableProvider> {
  provider: P;
  /** The entry that matched: the id itself or the pattern. */
  matched: string;
  exact: boolean;
}

export function isPattern(entry: string): boolean {
  return entry.includes('*');
}

const patternCache = new Map<string, RegExp>();
export function patternMatches(pattern: string, model: string): boolean {
  let re = patternCache.get(pattern);
  if (!re) {
    re = new RegExp(`^${pattern.split('*').map(escapeRegExp).join('.*')}$`);
    if (patternCache.size > 10_000) patternCache.clear();
    patternCache.set(pattern, re);
  }
  return re.test(model);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function specificity(pattern: string): [number, number] {
  return [pattern.replace(/\*/g, '').length, -(pattern.split('*').length - 1)];
}

export function routeModel<P extends RoutableProvider>(
  model: string,
  providers: readonly P[],
): Route<P> | null {
  const exact = providers
    .filter((p) => p.models.includes(model))
    .sort((a, b) => a.name.localeCompare(b.name));
  if (exact[0]) return { provider: exact[0], matched: model, exact: true };
  let best: { provider: P; pattern: string; score: [number, number] } | null = null;
  for (const provider of providers) {
    for (const entry of provider.models) {
      if (!isPattern(entry) || !patternMatches(entry, model)) continue;
      const score = specificity(entry);
      if (
        !best ||
        score[0] > best.score[0] ||
        (score[0] === best.score[0] && score[1] > best.score[1]) ||
        (score[0] === best.score[0] &&
          score[1] === best.score[1] &&
          provider.name.localeCompare(best.provider.name) < 0)
      ) {
        best = { provider, pattern: entry, score };
      }
    }
  }
  return best ? { provider: best.provider, matched: best.pattern, exact: false } : null;
}

/** Whether a client key's allowed_models (ids or patterns; null = all) lets it use a model. */
export function modelAllowed(model: string, allowed: readonly string[] | null): boolean {
  if (allowed === null) return true;
  return allowed.some((entry) => (isPattern(entry) ? patternMatches(entry, model) : entry === model));
}
