// Writes the PrometheusRule of deploy/kubernetes/components/prometheus-rules from
// deploy/prometheus/relay-alerts.yml, so that the two never differ: the same groups, comments
// included, wrapped in the object the Prometheus Operator reads.
// Usage: node test/monitoring/render-prometheusrule.mjs            (writes the file)
//        node test/monitoring/render-prometheusrule.mjs --check    (exit 1 when it is out of date)
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import * as prettier from 'prettier';
import { Document, parseDocument } from 'yaml';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
export const RULES = join(root, 'deploy/prometheus/relay-alerts.yml');
export const PROMETHEUS_RULE = join(
  root,
  'deploy/kubernetes/components/prometheus-rules/prometheusrule.yaml',
);

export async function renderPrometheusRule() {
  const rules = parseDocument(readFileSync(RULES, 'utf8'));
  const doc = new Document({
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: {
      name: 'upload-relay',
      labels: {
        'app.kubernetes.io/name': 'upload-relay',
        'app.kubernetes.io/part-of': 'upload-relay',
      },
    },
    spec: {},
  });
  doc.setIn(['spec', 'groups'], rules.get('groups', true));
  doc.commentBefore =
    ' Generated from deploy/prometheus/relay-alerts.yml by test/monitoring/render-prometheusrule.mjs:\n' +
    ' edit that file, then run the script (test/unit/alert-rules.test.ts checks that the two agree).\n' +
    ' Runbooks: docs/operations.md, "Monitoring: dashboard and alerts".';
  const options = await prettier.resolveConfig(PROMETHEUS_RULE);
  return prettier.format(doc.toString({ lineWidth: 100 }), { ...options, parser: 'yaml' });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const text = await renderPrometheusRule();
  if (process.argv[2] === '--check') {
    if (readFileSync(PROMETHEUS_RULE, 'utf8') !== text) {
      console.error(
        `${PROMETHEUS_RULE} is out of date: run node test/monitoring/render-prometheusrule.mjs`,
      );
      process.exit(1);
    }
  } else writeFileSync(PROMETHEUS_RULE, text);
}
