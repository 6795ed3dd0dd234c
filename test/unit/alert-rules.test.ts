/**
 * deploy/prometheus/relay-alerts.yml: valid for Prometheus (`promtool check rules`), each alert
 * fired and kept quiet by its unit tests (`promtool test rules`), each with a runbook in
 * docs/operations.md, and the PrometheusRule of the Kubernetes component holding the same rules.
 * Needs promtool (Debian's `prometheus` package); CI installs it, so this never skips.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';

/* eslint-disable @typescript-eslint/no-explicit-any -- rules files are untyped YAML */
const ROOT = join(__dirname, '../..');
const RULES = join(ROOT, 'deploy/prometheus/relay-alerts.yml');
const RULE_TESTS = join(ROOT, 'deploy/prometheus/relay-alerts.test.yml');
const COMPONENT = join(ROOT, 'deploy/kubernetes/components/prometheus-rules');
const RENDER = join(ROOT, 'test/monitoring/render-prometheusrule.mjs');
const OPERATIONS = join(ROOT, 'docs/operations.md');

const rules = parse(readFileSync(RULES, 'utf8'));
const alerts = (): any[] => rules.groups.flatMap((g: any) => g.rules).filter((r: any) => r.alert);

function promtool(args: string[], env: NodeJS.ProcessEnv = process.env) {
  const run = spawnSync('promtool', args, { encoding: 'utf8', env });
  if ((run.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT')
    throw new Error(
      "promtool is not installed: these tests check the alert rules with Prometheus's own tool. Install it with `sudo apt-get install -y prometheus` (Debian's package; .ci/run installs it) and run them again.",
    );
  return run;
}

describe('promtool', () => {
  test('check rules: the file is valid for Prometheus', () => {
    const run = promtool(['check', 'rules', RULES]);
    expect(run.stderr).toBe('');
    expect(run.stdout).toContain(`SUCCESS: ${alerts().length} rules found`);
    expect(run.status).toBe(0);
  });

  test('test rules: every alert fires on its trouble and stays quiet on healthy series', () => {
    const run = promtool(['test', 'rules', RULE_TESTS]);
    expect(run.stdout + run.stderr).toContain('SUCCESS');
    expect(run.status).toBe(0);
  });

  test('promtool refuses a broken expression and a failed expectation (the checks can fail)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-rules-'));
    try {
      const broken = readFileSync(RULES, 'utf8').replace(
        'expr: relay_session_store_up == 0',
        'expr: relay_session_store_up == ',
      );
      writeFileSync(join(dir, 'relay-alerts.yml'), broken);
      expect(promtool(['check', 'rules', join(dir, 'relay-alerts.yml')]).status).not.toBe(0);
      writeFileSync(join(dir, 'relay-alerts.yml'), readFileSync(RULES));
      const wrong = readFileSync(RULE_TESTS, 'utf8').replace(
        'summary: No upload relay instance is ready',
        'summary: Something else',
      );
      writeFileSync(join(dir, 'relay-alerts.test.yml'), wrong);
      const run = promtool(['test', 'rules', join(dir, 'relay-alerts.test.yml')]);
      expect(run.status).not.toBe(0);
      expect(run.stdout + run.stderr).toContain('alertname: RelayNoReadyInstance');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('without promtool these tests fail and say what to install', () => {
    expect(() => promtool(['--version'], { PATH: '/nonexistent' })).toThrow(
      /^promtool is not installed: .*apt-get install -y prometheus/,
    );
  });

  test('each alert has a unit test that fires it and one that keeps it quiet', () => {
    const cases = parse(readFileSync(RULE_TESTS, 'utf8')).tests.flatMap(
      (t: any) => t.alert_rule_test ?? [],
    );
    for (const { alert } of alerts()) {
      const own = cases.filter((c: any) => c.alertname === alert);
      const fires = own.some((c: any) => (c.exp_alerts ?? []).length > 0);
      const quiet = own.some((c: any) => (c.exp_alerts ?? []).length === 0);
      expect({ alert, fires, quiet }).toEqual({ alert, fires: true, quiet: true });
    }
  });
});

test('every alert: a severity, for, summary, description and a runbook that exists', () => {
  const docs = readFileSync(OPERATIONS, 'utf8');
  // The runbook sections are `### <AlertName>`: GitHub's anchor for such a heading is its lowercase.
  const headings = [...docs.matchAll(/^### (Relay\w+)$/gm)].map((m) => m[1]);
  expect(alerts().length).toBeGreaterThanOrEqual(8);
  for (const rule of alerts()) {
    expect(rule.alert).toMatch(/^Relay[A-Z]\w+$/);
    expect(rule.expr).toEqual(expect.stringMatching(/\S/));
    expect(rule.for).toMatch(/^\d+[smh]$/);
    expect(['critical', 'warning']).toContain(rule.labels?.severity);
    expect(rule.annotations).toEqual({
      summary: expect.stringMatching(/\S/),
      description: expect.stringMatching(/\S/),
      runbook_url: `docs/operations.md#${rule.alert.toLowerCase()}`,
    });
    expect(headings).toContain(rule.alert);
    // Each runbook says what the alert means, how to confirm it, and what to do.
    const section = docs.split(`\n### ${rule.alert}\n`)[1]!.split(/\n#{2,3} /)[0]!;
    for (const part of ['**What it means.**', '**How to confirm.**', '**What to do.**'])
      expect([rule.alert, section.includes(part)]).toEqual([rule.alert, true]);
  }
  // No runbook for an alert that is not there.
  expect(headings.sort()).toEqual(
    alerts()
      .map((r) => r.alert)
      .sort(),
  );
});

describe('the PrometheusRule of deploy/kubernetes/components/prometheus-rules', () => {
  const object = parse(readFileSync(join(COMPONENT, 'prometheusrule.yaml'), 'utf8'));

  test('holds the same rules as deploy/prometheus/relay-alerts.yml', () => {
    const message = 'out of date: run node test/monitoring/render-prometheusrule.mjs';
    expect([message, object.spec.groups]).toEqual([message, rules.groups]);
    // …written as the script writes it, so that regenerating changes nothing.
    const check = spawnSync(process.execPath, [RENDER, '--check'], { encoding: 'utf8' });
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
  });

  test('has the shape the Prometheus Operator reads', () => {
    expect(object).toMatchObject({
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'PrometheusRule',
      metadata: { name: expect.stringMatching(/^[a-z0-9-]+$/) },
    });
    expect(object.spec.groups.length).toBeGreaterThan(0);
    for (const group of object.spec.groups) {
      expect(group.name).toEqual(expect.any(String));
      expect(group.rules.length).toBeGreaterThan(0);
      for (const rule of group.rules) {
        expect(Object.keys(rule).sort()).toEqual(['alert', 'annotations', 'expr', 'for', 'labels']);
        for (const value of [rule.alert, rule.expr, rule.for])
          expect(value).toEqual(expect.any(String));
        for (const map of [rule.labels, rule.annotations])
          for (const value of Object.values(map)) expect(value).toEqual(expect.any(String));
      }
    }
  });

  test('is a Kustomize component (optional: no overlay includes it unless told to)', () => {
    const kustomization = parse(readFileSync(join(COMPONENT, 'kustomization.yaml'), 'utf8'));
    expect(kustomization).toMatchObject({
      apiVersion: 'kustomize.config.k8s.io/v1alpha1',
      kind: 'Component',
      resources: ['prometheusrule.yaml'],
    });
  });
});
