/**
 * The order in which a routed request tries its targets: tiers ascending (1 first); inside a tier a
 * weighted random order (Efraimidis–Spirakis: each target draws u ∈ (0, 1) and is ranked by
 * u^(1/weight), highest first — the first place goes to each target with probability weight / Σ
 * weights, and so on down the tier without replacement). Targets already tried are left out.
 */
export interface PlannedTarget {
  tier: number;
  weight: number;
}

/** A random number in [0, 1) (Math.random by default; tests inject their own). */
export type Rng = () => number;

export function targetPlan<T extends PlannedTarget>(
  targets: readonly T[],
  rng: Rng = Math.random,
  exclude?: ReadonlySet<T>,
): T[] {
  const keyed: { target: T; key: number }[] = [];
  for (const target of targets) {
    if (exclude?.has(target)) continue;
    // ln(u) / w orders like u^(1/w) without losing precision for large weights; u = 0 would be -∞
    // for every weight, so 1 - rng() (in (0, 1]) is used.
    const u = 1 - rng();
    keyed.push({ target, key: Math.log(u) / Math.max(1, target.weight) });
  }
  keyed.sort((a, b) => a.target.tier - b.target.tier || b.key - a.key);
  return keyed.map((k) => k.target);
}
