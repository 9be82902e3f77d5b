import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { FloodgateMetrics } from '../../src/metrics/floodgate-metrics.js';

/**
 * docker/monitoring stays in step with the code: the files parse, and every metric they query is
 * one the gateway exposes (a renamed metric would otherwise silently empty a panel or an alert).
 */
const DIR = 'docker/monitoring';

async function exposedNames(): Promise<Set<string>> {
  const metrics = new FloodgateMetrics();
  const names = new Set<string>();
  for (const m of await metrics.registry.getMetricsAsJSON()) {
    names.add(m.name);
    if (String(m.type) === 'histogram')
      for (const s of ['_bucket', '_count', '_sum']) names.add(`${m.name}${s}`);
  }
  return names;
}

function referenced(text: string): string[] {
  return [...new Set(text.match(/\b(floodgate|nodejs|process)_[a-z0-9_]+/g) ?? [])];
}

describe('docker/monitoring', () => {
  it('prometheus.yml scrapes the instances directly and loads the alert rules', () => {
    const config = parse(readFileSync(`${DIR}/prometheus.yml`, 'utf8'));
    expect(config.rule_files).toContain('/etc/prometheus/alerts.yml');
    const job = config.scrape_configs.find((j: { job_name: string }) => j.job_name === 'floodgate');
    expect(job.metrics_path).toBe('/metrics');
    expect(job.static_configs[0].targets).toEqual(['gateway-1:3000', 'gateway-2:3000']);
  });

  it('alerts.yml has the required rules, each over exposed metrics', async () => {
    const names = await exposedNames();
    const rules = parse(readFileSync(`${DIR}/alerts.yml`, 'utf8')).groups.flatMap(
      (g: { rules: unknown[] }) => g.rules,
    ) as {
      alert: string;
      expr: string;
      for: string;
      annotations: { summary: string };
    }[];
    const byName = Object.fromEntries(rules.map((r) => [r.alert, r]));
    expect(byName.FloodgateHighErrorRate!.expr).toContain('> 0.05');
    expect(byName.FloodgateAllKeysCooling!.expr).toContain('state="active"');
    expect(byName.FloodgateRetreatSustained!.for).toBe('5m');
    expect(byName.FloodgateGatewayOverheadP99High!.expr).toContain('histogram_quantile(0.99');
    for (const r of rules) {
      expect(r.annotations.summary, r.alert).toBeTruthy();
      for (const name of referenced(r.expr)) expect(names.has(name), `${r.alert}: ${name}`).toBe(true);
    }
  });

  it('the Grafana dashboard is valid JSON whose every query uses exposed metrics', async () => {
    const names = await exposedNames();
    const dashboard = JSON.parse(readFileSync(`${DIR}/grafana/floodgate-dashboard.json`, 'utf8'));
    expect(dashboard.uid).toBe('floodgate-overview');
    const exprs = (dashboard.panels as { targets?: { expr: string }[] }[]).flatMap((p) =>
      (p.targets ?? []).map((t) => t.expr),
    );
    expect(exprs.length).toBeGreaterThan(20);
    const used = new Set(exprs.flatMap(referenced));
    for (const name of used) expect(names.has(name), name).toBe(true);
    // Every Floodgate family appears on the dashboard.
    const families = (await new FloodgateMetrics({ defaultMetrics: false }).registry.getMetricsAsJSON()).map(
      (m) => m.name,
    );
    for (const family of families) {
      expect(
        [...used].some((u) => u.startsWith(family)),
        family,
      ).toBe(true);
    }
  });
});
