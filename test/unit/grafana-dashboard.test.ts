/**
 * deploy/grafana/relay-dashboard.json: importable as it is (Grafana's schema, a Prometheus
 * data-source variable every query goes through), every query valid PromQL, and every metric the
 * relay exports on a panel. That the metrics it names are those of a real scrape is
 * test/integration/monitoring-metrics.test.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RelayMetrics } from '../../src/kernel/metrics';
import { WebhookMetrics } from '../../src/webhooks/metrics';
import { checkDashboard } from '../monitoring/grafana-schema';
import { metricNames, variableQueryMetricNames } from '../monitoring/promql';

/* eslint-disable @typescript-eslint/no-explicit-any -- the dashboard is JSON */
const DASHBOARD_FILE = join(__dirname, '../../deploy/grafana/relay-dashboard.json');
const load = (): any => JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8'));
const dashboard = load();
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };

const rows = () => dashboard.panels.filter((p: any) => p.type === 'row');
/** Panels, those inside collapsed rows included. */
const panels = (): any[] =>
  dashboard.panels
    .flatMap((p: any) => (p.type === 'row' ? (p.panels ?? []) : [p]))
    .filter((p: any) => p.type !== 'text');
const variables = (): any[] => dashboard.templating.list;
const variableQuery = (v: any): string => (typeof v.query === 'string' ? v.query : v.query.query);

test('an identity Grafana keeps on import: uid, title, schemaVersion, no instance-specific id', () => {
  expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
  expect(dashboard.title).toEqual(expect.any(String));
  expect(Number.isInteger(dashboard.schemaVersion)).toBe(true);
  expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36); // datasource refs as {type, uid}
  expect(dashboard.id ?? null).toBeNull();
});

test("Grafana's schema (@grafana/schema) accepts the dashboard and its panels' options", () => {
  expect(checkDashboard(dashboard)).toEqual([]);
});

test('the schema check is no rubber stamp: it names what Grafana would not take', () => {
  const broken = load();
  const timeseries = broken.panels.find((p: any) => p.type === 'timeseries');
  const stat = broken.panels.find((p: any) => p.type === 'stat');
  timeseries.options.legend.displayMode = 'sideways';
  stat.options.colorMode = 'rainbow';
  broken.panels[0].gridPos = { w: 24, h: 1, x: 0 };
  broken.graphTooltip = 'shared';
  broken.panels.at(-1).titel = 'typo';
  const problems = checkDashboard(broken).map((p) => `${p.message} @ ${p.near}`);
  expect(problems).toEqual(
    expect.arrayContaining([
      expect.stringMatching(/"sideways".*not assignable.*@ "displayMode": "sideways"/s),
      expect.stringMatching(/"rainbow".*not assignable.*@ "colorMode": "rainbow"/s),
      expect.stringMatching(/Property '"?y"?' is missing/),
      expect.stringMatching(
        /not assignable to type 'DashboardCursorSync.*@ "graphTooltip": "shared"/s,
      ),
      expect.stringMatching(/'"?titel"?' does not exist/),
    ]),
  );
});

test('a Prometheus data-source variable, which every panel and query goes through', () => {
  const datasource = variables().find((v) => v.type === 'datasource');
  expect(datasource).toMatchObject({ name: 'datasource', query: 'prometheus' });
  for (const v of variables().filter((v) => v.type === 'query'))
    expect([v.name, v.datasource]).toEqual([v.name, DATASOURCE]);
  expect(panels().length).toBeGreaterThan(10);
  for (const panel of panels()) {
    expect([panel.title, panel.datasource]).toEqual([panel.title, DATASOURCE]);
    expect(panel.targets.length).toBeGreaterThan(0);
    for (const target of panel.targets) {
      expect([panel.title, target.datasource]).toEqual([panel.title, DATASOURCE]);
      expect(target.expr).toEqual(expect.stringMatching(/\S/));
    }
    const refIds = panel.targets.map((t: any) => t.refId);
    expect(new Set(refIds).size).toBe(refIds.length);
  }
});

test('every query is PromQL, and every variable it uses is defined', () => {
  const defined = new Set(variables().map((v) => v.name));
  const queries = [
    ...panels().flatMap((p) => p.targets.map((t: any) => t.expr as string)),
    ...variables()
      .filter((v) => v.type === 'query')
      .map(variableQuery),
  ];
  for (const query of queries) {
    // Grafana's own ($__rate_interval…) aside, each $name or ${name} is a variable of the dashboard.
    for (const [, a, b] of query.matchAll(/\$(?:\{(\w+)\}|(\w+))/g)) {
      const name = (a ?? b)!;
      if (!name.startsWith('__'))
        expect([query, name, defined.has(name)]).toEqual([query, name, true]);
    }
  }
  for (const p of panels())
    for (const t of p.targets) expect(() => metricNames(t.expr)).not.toThrow();
  for (const v of variables().filter((v) => v.type === 'query'))
    expect(variableQueryMetricNames(variableQuery(v))).not.toEqual([]);
});

test('panels: unique ids, on the 24-column grid, none over another', () => {
  const all = [...dashboard.panels, ...rows().flatMap((r: any) => r.panels ?? [])];
  const ids = all.map((p: any) => p.id);
  expect(new Set(ids).size).toBe(ids.length);
  const boxes = dashboard.panels.map((p: any) => ({ title: p.title, ...p.gridPos }));
  for (const b of boxes) {
    expect(b.x + b.w).toBeLessThanOrEqual(24);
    expect(b.w * b.h).toBeGreaterThan(0);
  }
  for (const [i, a] of boxes.entries())
    for (const b of boxes.slice(i + 1)) {
      const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
      expect([a.title, b.title, overlap]).toEqual([a.title, b.title, false]);
    }
});

test('every metric of the relay is on a panel (a new metric needs one)', () => {
  const registry = new RelayMetrics().registry;
  new WebhookMetrics(registry);
  const exported = registry
    .getMetricsAsArray()
    .map((m) => m.name)
    .filter((name) => name.startsWith('relay_'));
  expect(exported.length).toBeGreaterThan(15);
  const shown = new Set(
    panels()
      .flatMap((p) => p.targets.flatMap((t: any) => metricNames(t.expr)))
      // A histogram is shown through its series.
      .map((name: string) => name.replace(/_(bucket|sum|count)$/, '')),
  );
  expect(exported.filter((name) => !shown.has(name))).toEqual([]);
});
