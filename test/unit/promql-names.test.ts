/** The metric-name reader the dashboard and alert checks rely on: names only, nothing else. */
import { metricNames, sampleNames, variableQueryMetricNames } from '../monitoring/promql';

test.each([
  ['a bare name', 'relay_uploads_in_progress', ['relay_uploads_in_progress']],
  [
    'functions, aggregations with by, label names and matchers',
    'sum by (route, code) (rate(relay_uploads_failed_total{code=~"upstream_.+", route!="videos"}[5m]))',
    ['relay_uploads_failed_total'],
  ],
  [
    'histogram_quantile over buckets, with Grafana’s $__rate_interval',
    'histogram_quantile(0.99, sum by (le) (rate(relay_part_upload_duration_seconds_bucket{job=~"$job"}[$__rate_interval])))',
    ['relay_part_upload_duration_seconds_bucket'],
  ],
  [
    'binary operators, or, vector(), on(), bool, offset, a subquery',
    '(sum(a_total) or vector(0)) / on(instance) group_left b > bool 1 unless max_over_time(c[1h:5m] offset 1d)',
    ['a_total', 'b', 'c'],
  ],
  [
    'names that look like keywords or functions when they are series',
    'sum(rate(rate_total[5m])) + sum by (le) (sum) + count_values("x", by)',
    ['by', 'rate_total', 'sum'],
  ],
  ['a {__name__="…"} selector', '{__name__="relay_ready", job="x"}', ['relay_ready']],
  ['a string literal is no name', 'label_replace(up, "dst", "relay_ready", "src", "(.*)")', ['up']],
])('%s', (_what, query, names) => {
  expect(metricNames(query)).toEqual(names);
});

test('a query that is not PromQL is refused, pointing at the place', () => {
  expect(() => metricNames('sum(rate(relay_ready[5m])')).toThrow(/not PromQL/);
  expect(() => metricNames('relay_ready{job=}')).toThrow(
    /not PromQL at \d+: relay_ready\{job=⟨here⟩/,
  );
});

test('Grafana variable queries: label_values with and without a metric, query_result', () => {
  expect(
    variableQueryMetricNames('label_values(relay_uploads_in_progress{job=~"$job"}, instance)'),
  ).toEqual(['relay_uploads_in_progress']);
  expect(variableQueryMetricNames('label_values(job)')).toEqual([]);
  expect(variableQueryMetricNames('query_result(topk(3, relay_uploads_in_progress))')).toEqual([
    'relay_uploads_in_progress',
  ]);
  expect(() => variableQueryMetricNames('label_names()')).toThrow(/not a Grafana/);
});

test('sample names of an exposition, comments and HELP of absent series left out', () => {
  const text = [
    '# HELP relay_webhook_dropped_total Webhook events given up on',
    '# TYPE relay_webhook_dropped_total counter',
    '# TYPE relay_part_upload_duration_seconds histogram',
    'relay_part_upload_duration_seconds_bucket{le="0.05"} 1',
    'relay_part_upload_duration_seconds_sum 0.01',
    'relay_part_upload_duration_seconds_count 1',
    'relay_ready 1',
    '',
  ].join('\n');
  expect([...sampleNames(text)].sort()).toEqual([
    'relay_part_upload_duration_seconds_bucket',
    'relay_part_upload_duration_seconds_count',
    'relay_part_upload_duration_seconds_sum',
    'relay_ready',
  ]);
});
