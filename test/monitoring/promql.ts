/**
 * Metric names out of PromQL, read by Prometheus's own grammar (@prometheus-io/lezer-promql, the
 * parser of Prometheus's web UI) rather than by pattern: functions, aggregations, keywords, label
 * names and strings are nodes of their own, so only the names of selected series are returned.
 */
import { parser } from '@prometheus-io/lezer-promql';

/** Grafana's interval variables stand where PromQL wants a duration. */
const GRAFANA_DURATIONS =
  /\$(?:__(?:rate_interval|interval|range)\b|\{__(?:rate_interval|interval|range)\})/g;

/** A query's metric names. Throws when it is not valid PromQL (after Grafana's variables). */
export function metricNames(query: string): string[] {
  const text = query.replace(GRAFANA_DURATIONS, '5m');
  const names = new Set<string>();
  const errors: number[] = [];
  parser.parse(text).iterate({
    enter(node) {
      if (node.type.isError) errors.push(node.from);
      // `name{…}` and bare `name`: the Identifier of a VectorSelector.
      if (node.name === 'Identifier' && node.node.parent?.name === 'VectorSelector')
        names.add(text.slice(node.from, node.to));
      // `{__name__="name"}`: an equality matcher on the name label.
      if (node.name === 'UnquotedLabelMatcher') {
        const label = node.node.getChild('LabelName');
        const value = node.node.getChild('StringLiteral');
        if (label && value && node.node.getChild('MatchOp')?.getChild('EqlSingle')) {
          if (text.slice(label.from, label.to) === '__name__')
            names.add(JSON.parse(text.slice(value.from, value.to)) as string);
        }
      }
    },
  });
  if (errors.length > 0) {
    const at = errors[0]!;
    throw new Error(`not PromQL at ${at}: ${text.slice(0, at)}⟨here⟩${text.slice(at)}`);
  }
  return [...names].sort();
}

/**
 * The metric a Grafana Prometheus variable query reads: `label_values(metric{…}, label)`,
 * `query_result(promql)`, `metrics(regex)` or plain `label_values(label)` (none).
 */
export function variableQueryMetricNames(query: string): string[] {
  const labelValues = /^\s*label_values\(\s*(.+),\s*[a-zA-Z_]\w*\s*\)\s*$/s.exec(query);
  if (labelValues) return metricNames(labelValues[1]!);
  const queryResult = /^\s*query_result\((.+)\)\s*$/s.exec(query);
  if (queryResult) return metricNames(queryResult[1]!);
  if (/^\s*label_values\(\s*[a-zA-Z_]\w*\s*\)\s*$/.test(query)) return [];
  throw new Error(`not a Grafana Prometheus variable query this check reads: ${query}`);
}

/** The names of the samples in a Prometheus text exposition (histograms' _bucket, _sum, _count). */
export function sampleNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
    if (name) names.add(name);
  }
  return names;
}
