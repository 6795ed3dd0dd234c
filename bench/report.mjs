// Turns the benchmark's results into docs/benchmarks.md and an SVG chart (vega-lite, rendered headless).
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';

const MiB = 1024 * 1024;
const f1 = (x) => x.toFixed(1);
const f2 = (x) => x.toFixed(2);
const mib = (x) => `${(x / MiB).toFixed(0)} MiB`;

/** How the image starts node (allocator env, node's flags), which the servers under test copy. */
function imageEnvNote(meta) {
  const describe = (env, flags) => {
    const parts = [
      ...Object.entries(env ?? {}).map(([k, v]) => `\`${k}=${v}\``),
      ...(flags ?? []).map((f) => `\`${f}\``),
    ];
    return parts.length === 0 ? 'none' : parts.join(', ');
  };
  const ours = describe(meta.imageEnv, meta.imageFlags);
  if (ours === 'none') return '';
  const base =
    meta.baselineImageEnv || meta.baselineImageFlags
      ? ` The baseline build runs as its own image did (${describe(meta.baselineImageEnv, meta.baselineImageFlags)}).`
      : '';
  return ` The relay, the floor and the naive server run as the image runs node (the Dockerfile's allocator setting and \`CMD\` flags): ${ours}; the sinks and clients without them.${base}`;
}

function targets(variants) {
  const by = (pred) => variants.find(pred);
  const floor = by((v) => v.kind === 'floor');
  const relay = by((v) => v.kind === 'relay' && v.part === 16 && v.concurrency === 2);
  const naive = by((v) => v.kind === 'naive');
  const concurrent = by((v) => v.kind === 'concurrent');
  const slow = by((v) => v.kind === 'slow');
  const formula = 3 * 16 * MiB;
  const rows = [];
  const add = (measure, value, target, ok) => rows.push({ measure, value, target, ok });
  if (floor && relay) {
    const cpu = relay.cpuPerGiB.median / floor.cpuPerGiB.median;
    add('relay CPU per GiB ÷ busboy floor', `${f2(cpu)}×`, '≤ 1.4×', cpu <= 1.4);
    add(
      'relay throughput ÷ busboy floor',
      `${f2(relay.mibPerSecond.median / floor.mibPerSecond.median)}×`,
      '(reported)',
      true,
    );
  }
  if (relay && naive) {
    const t = relay.seconds.median / naive.seconds.median;
    add('time to 201 ÷ naive pattern', f2(t), '≤ 0.35', t <= 0.35);
  }
  if (relay) {
    const g = relay.rssGrowth.median;
    add(
      'RSS growth over idle, one upload, 16 MiB × 2',
      mib(g),
      `≤ ${mib(formula + 32 * MiB)} (formula + 32 MiB)`,
      g <= formula + 32 * MiB,
    );
  }
  if (concurrent && relay) {
    const a = concurrent.mibPerSecond.median / relay.mibPerSecond.median;
    add('8 concurrent uploads, aggregate ÷ one upload', `${f2(a)}×`, '≥ 0.9×', a >= 0.9);
    add(
      '8 concurrent uploads, RSS growth',
      mib(concurrent.rssGrowth.median),
      `≤ ${mib(8 * formula)} (formula × 8)`,
      concurrent.rssGrowth.median <= 8 * formula,
    );
  }
  // A throughput ratio shown for context, with no target of its own.
  const reportRatio = (measure, a, b) => {
    if (a && b)
      add(measure, `${f2(a.mibPerSecond.median / b.mibPerSecond.median)}×`, '(reported)', true);
  };
  reportRatio(
    "8 concurrent uploads ÷ one upload, without the image's node flags",
    by((v) => v.kind === 'concurrent-no-flags'),
    relay,
  );
  reportRatio(
    "one fast upload, throughput without the image's allocator setting ÷ with it",
    by((v) => v.kind === 'relay-glibc-default'),
    relay,
  );
  const baseline = by((v) => v.kind === 'baseline');
  reportRatio(
    '8 concurrent uploads ÷ one upload, the baseline build (same run)',
    by((v) => v.kind === 'baseline-concurrent'),
    baseline,
  );
  if (baseline && relay && floor) {
    const ours = relay.cpuPerGiB.median / floor.cpuPerGiB.median;
    const theirs = baseline.cpuPerGiB.median / floor.cpuPerGiB.median;
    add(
      'one fast upload, CPU ÷ floor against the baseline build (same run)',
      `${f2(ours)}× against ${f2(theirs)}×`,
      'within 5 %',
      ours <= theirs * 1.05,
    );
    const t = relay.mibPerSecond.median / baseline.mibPerSecond.median;
    add('one fast upload, throughput ÷ the baseline build', `${f2(t)}×`, '≥ 0.95×', t >= 0.95);
  }
  const traced = by((v) => v.kind === 'traced');
  if (traced && relay) {
    const cpu = traced.cpuPerGiB.median / relay.cpuPerGiB.median;
    const extra = traced.cpuPerGiB.median - relay.cpuPerGiB.median;
    add(
      'one fast upload traced (OTLP, every request sampled): CPU per GiB ÷ untraced (same run)',
      `${f2(cpu)}× (${extra >= 0 ? '+' : ''}${f2(extra)} CPU-s per GiB)`,
      '(reported)',
      true,
    );
    reportRatio('one fast upload traced: throughput ÷ untraced (same run)', traced, relay);
  }
  const mobile = by((v) => v.kind === 'mobile');
  if (mobile) {
    const per = mobile.rssGrowthPerUpload.median;
    add(
      `mobile: ${mobile.runs[0].uploads} uploads at 512 KiB/s, RSS growth per upload (all 201, byte-exact)`,
      `${(per / MiB).toFixed(2)} MiB`,
      '≤ 3.5 MiB',
      per <= 3.5 * MiB,
    );
  }
  const many = by((v) => v.kind === 'many');
  if (many) {
    const g = many.rssGrowth.median;
    add(
      `many: ${many.runs[0].uploads} uploads at 64 KiB/s in a ${mib(many.budget)} budget, RSS growth (all 201, byte-exact)`,
      mib(g),
      `≤ ${mib(many.budget * 1.15)} (budget + 15 %)`,
      g <= many.budget * 1.15,
    );
  }
  const fairness = by((v) => v.kind === 'fairness');
  if (fairness) {
    const t = fairness.seconds.median;
    add(
      'fairness: 16 uploads trickling a byte every 2 s from 4 principals in a 64 MiB budget; another principal’s 6 MiB upload, time to 201',
      `${t.toFixed(2)} s`,
      '≤ 5 s',
      t <= 5,
    );
  }
  if (slow) {
    add(
      'slow upstream, RSS growth',
      mib(slow.rssGrowth.median),
      `≤ ${mib(formula)} (the formula)`,
      slow.rssGrowth.median <= formula,
    );
  }
  return rows;
}

async function chart(variants) {
  const data = variants.map((v) => ({
    variant: v.name,
    'MiB/s (median)': v.mibPerSecond.median,
    'RSS growth, MiB (median)': v.rssGrowth.median / MiB,
  }));
  const bar = (field) => ({
    mark: 'bar',
    encoding: {
      y: { field: 'variant', type: 'nominal', sort: null, title: null },
      x: { field, type: 'quantitative' },
      tooltip: [{ field: 'variant' }, { field, format: '.1f' }],
    },
    width: 260,
  });
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    data: { values: data },
    hconcat: [bar('MiB/s (median)'), bar('RSS growth, MiB (median)')],
    config: { font: 'sans-serif' },
  };
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  return view.toSVG();
}

export async function renderReport(meta, variants) {
  const rows = targets(variants);
  const lines = [
    '# Benchmarks',
    '',
    `Generated by \`npm run bench\` on ${meta.date.slice(0, 10)}: Node ${meta.node}, ${meta.cpus} cores, a ${mib(meta.size)} file, ${meta.rounds} interleaved round(s), loopback. Every variant is its own process; the sink speaks api.video's part protocol and checks the SHA-256 of every upload (a mismatch fails the run). Figures are min / median over the rounds; a baseline build's variant runs next to the one it is compared with, first in odd rounds and second in even ones.${imageEnvNote(meta)}`,
    '',
    '![throughput and memory per variant](benchmarks.svg)',
    '',
    'What the profile showed, what was tuned, and what limits the missed targets: [performance-notes.md](performance-notes.md).',
    '',
    '## Targets',
    '',
    '| measure | measured | target | |',
    '|---|---|---|---|',
    ...rows.map(
      (r) => `| ${r.measure} | ${r.value} | ${r.target} | ${r.ok ? 'met' : '**missed**'} |`,
    ),
    '',
    '## Per variant',
    '',
    '| variant | MiB/s (min / median) | time to answer, s (median) | CPU-s per GiB, server (median) | CPU-s per GiB, sink (median) | idle RSS | RSS growth (min / median / max) |',
    '|---|---|---|---|---|---|---|',
    ...variants.map(
      (v) =>
        `| ${v.name} | ${f1(v.mibPerSecond.min)} / ${f1(v.mibPerSecond.median)} | ${f2(v.seconds.median)} | ${f2(v.cpuPerGiB.median)} | ${v.runs[0].sinkCpuPerGiB === null ? '—' : f2(median(v.runs.map((r) => r.sinkCpuPerGiB)))} | ${mib(v.idleRss.median)} | ${mib(v.rssGrowth.min)} / ${mib(v.rssGrowth.median)} / ${mib(v.rssGrowth.max)} |`,
    ),
    '',
    ...manyTable(variants),
  ];
  return { markdown: lines.join('\n') + '\n', svg: await chart(variants) };
}

/** Variants of many slow clients: what each upload costs in memory, and how long they took. */
function manyTable(variants) {
  const many = variants.filter((v) => v.many);
  if (many.length === 0) return [];
  return [
    '## Many slow clients',
    '',
    "Peak bytes held and reserved are the relay's own accounting (`relay_bytes_buffered`, `relay_memory_reserved_bytes`, scraped every 500 ms); RSS growth above them is the process's own cost (V8, sockets, the allocator).",
    '',
    '| variant | uploads | seconds until the last 201 (median) | RSS growth (median) | per upload (min / median / max) | peak held / reserved (median) | peak uploads waiting for room | CPU-s per GiB (median) |',
    '|---|---|---|---|---|---|---|---|',
    ...many.map(
      (v) =>
        `| ${v.name} | ${v.runs[0].uploads} | ${f1(v.seconds.median)} | ${mib(v.rssGrowth.median)} | ${f2(v.rssGrowthPerUpload.min / MiB)} / ${f2(v.rssGrowthPerUpload.median / MiB)} / ${f2(v.rssGrowthPerUpload.max / MiB)} MiB | ${peak(v, 'peakBuffered')} / ${peak(v, 'peakReserved')} | ${v.runs[0].peakWaiting ?? '—'} | ${f2(v.cpuPerGiB.median)} |`,
    ),
    '',
    ...breakdownTable(many),
  ];
}

/**
 * Where RSS growth goes at its peak, from the relay's own /metrics (the round with the median RSS
 * growth): the file bytes it held, other Buffers (idle pooled blocks, socket reads not yet
 * collected), V8's heap, and the rest (sockets, parsers, the allocator's free memory).
 */
function breakdownTable(many) {
  const rows = many.flatMap((v) => {
    const runs = v.runs.filter((r) => r.breakdown);
    if (runs.length === 0) return [];
    const b = runs.sort((x, y) => x.rssGrowth - y.rssGrowth)[Math.floor((runs.length - 1) / 2)]
      .breakdown;
    const each = (x) => `${mib(x)} (${((x / MiB / v.runs[0].uploads) * 1024).toFixed(0)} KiB)`;
    return [
      `| ${v.name} | ${mib(b.rss)} | ${mib(b.held)} | ${each(b.otherBuffers)} | ${each(b.heap)} | ${each(b.rest)} |`,
    ];
  });
  if (rows.length === 0) return [];
  return [
    "Where RSS growth went, at the relay's scrape of its own /metrics where it held the most file bytes (the round with the median growth; per upload in brackets): the file bytes held, other Buffers (pooled blocks kept idle or partly filled, blocks let go and socket reads not yet collected), V8's heap, and the rest (sockets, parsers, the allocator's free memory; it can come out negative, as a Buffer's pages not yet written count in its size but not in RSS).",
    '',
    '| variant | RSS growth at that scrape | file bytes held | other Buffers | V8 heap | the rest |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
  ];
}

function peak(v, key) {
  const xs = v.runs.map((r) => r[key]).filter((x) => x !== null && x !== undefined);
  return xs.length ? mib(median(xs)) : '—';
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}
