// npm run bench [-- --quick] [-- --size 1GiB] [-- --rounds 3] [-- --only <regex>] [-- --uploads N]
// `--only mobile`: the many-slow-uploads variants alone; `--uploads N` scales their upload count.
// Every variant runs as its own process on loopback; rounds are interleaved so machine noise hits
// all variants alike. Results: docs/benchmarks.md, docs/benchmarks.json, docs/benchmarks.svg
// (with --quick, under bench/.work/ instead, so CI does not rewrite the committed results).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import process from 'node:process';
import {
  MiB,
  budgetSampler,
  fileDigest,
  imageAllocatorEnv,
  imageNodeFlags,
  median,
  rssSampler,
  sinkRecord,
  startProcess,
  uploadForm,
} from './lib.mjs';
import { renderReport } from './report.mjs';

const ROOT = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const GiB = 1024 * MiB;
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(`--${name}`);
const option = (name, fallback) =>
  argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1] : fallback;
const parseSize = (t) =>
  Math.round(
    Number(/^[\d.]+/.exec(t)[0]) * ({ g: GiB, m: MiB }[/[gm]/i.exec(t)?.[0].toLowerCase()] ?? 1),
  );

const quick = flag('quick');
const size = quick ? 64 * MiB : parseSize(option('size', '1GiB'));
const rounds = Number(option('rounds', quick ? 1 : 3));
const outDir = quick || argv.includes('--only') ? join(ROOT, 'bench/.work') : join(ROOT, 'docs');
const grid = quick ? [[16, 2]] : [5, 16, 64].flatMap((p) => [1, 2, 4].map((c) => [p, c]));
const script = (name) => join(ROOT, name);

const IMAGE_ENV = imageAllocatorEnv(join(ROOT, 'Dockerfile'));
// And node's flags from the image's CMD: every server under test starts as the image starts it.
const IMAGE_FLAGS = imageNodeFlags(join(ROOT, 'Dockerfile'));

function relayEnv(sinkUrl, partMiB, concurrency, buffering = 'pooled', extra = {}) {
  return {
    ...IMAGE_ENV,
    NODE_ENV: 'production',
    RELAY_ALLOW_ANONYMOUS: 'true',
    APIVIDEO_API_KEY: 'bench-key',
    APIVIDEO_BASE_URL: sinkUrl,
    UPLOAD_PART_SIZE: `${partMiB}MiB`,
    UPLOAD_PART_CONCURRENCY: String(concurrency),
    UPLOAD_PART_BUFFERING: buffering,
    UPLOAD_MAX_CONCURRENT_PER_CLIENT: '8',
    LOG_LEVEL: 'info', // two lines per upload, none on the byte path
    PORT: '0',
    HOST: '127.0.0.1',
    ...extra,
  };
}

/**
 * Runs `uploads` against a fresh server process; measures its CPU and RSS, and the sink's CPU.
 * `bytesPerSecond` paces each upload like a slow client; `spreadMs` spreads their starts evenly.
 */
async function measure(
  name,
  start,
  { sink, uploads, verify, bytesPerSecond, spreadMs = 0, scrape = false, warm },
) {
  const server = await start();
  try {
    await uploadForm(server.url, MiB); // warm-up: code paths loaded, pools open
    await warm?.(); // what else a variant loads once, not per GiB (the traced one's first export)
    await new Promise((r) => setTimeout(r, 300));
    const idleRss = server.rss();
    // Only the relay has /metrics (the floor would choke on a GET); only many-client runs need it.
    const budget = scrape ? budgetSampler(server.url) : { ready: null, stop: () => ({}) };
    await budget.ready;
    const cpu0 = server.cpuSeconds();
    const sinkCpu0 = sink?.cpuSeconds() ?? 0;
    const sampler = rssSampler(server);
    const started = performance.now();
    const answers = await Promise.all(
      uploads.map(async (bytes, i) => {
        if (spreadMs > 0) await sleep((spreadMs * i) / uploads.length);
        return uploadForm(server.url, bytes, { bytesPerSecond });
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const peakRss = sampler.stop();
    const accounted = budget.stop();
    const bytes = uploads.reduce((a, b) => a + b, 0);
    for (const [i, a] of answers.entries()) {
      if (a.status !== 201)
        throw new Error(`${name}: answer ${a.status} ${JSON.stringify(a.body)}`);
      if (verify) await verify(a, uploads[i]);
    }
    const perGiB = (s) => s / (bytes / GiB);
    return {
      name,
      bytes,
      seconds,
      mibPerSecond: bytes / MiB / seconds,
      cpuPerGiB: perGiB(server.cpuSeconds() - cpu0),
      sinkCpuPerGiB: sink ? perGiB(sink.cpuSeconds() - sinkCpu0) : null,
      idleRss,
      peakRss,
      rssGrowth: peakRss - idleRss,
      uploads: uploads.length,
      peakReserved: accounted.reserved ?? null,
      peakBuffered: accounted.buffered ?? null,
      peakWaiting: accounted.waiting ?? null,
      breakdown: accounted.breakdown ?? null,
      rssGrowthPerUpload: (peakRss - idleRss) / uploads.length,
    };
  } finally {
    await server.stop();
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const FAIRNESS_TOKENS = ['alpha', 'bravo', 'charlie', 'delta', 'echo'].map(
  (n) => `bench-${n}-token-0123456789`,
);
const FAIRNESS_ENV = {
  UPLOAD_MEMORY_BUDGET: '64MiB',
  RELAY_API_TOKENS: FAIRNESS_TOKENS.join(','),
  UPLOAD_MAX_CONCURRENT_PER_CLIENT: '100',
};

/**
 * Issue #24's attack as a measure: 16 uploads from 4 principals trickle a byte every 2 s into a
 * 64 MiB budget, then a fifth principal uploads 6 MiB; its time to 201 is the figure (it waited
 * without end when each trickler held a whole part's room from its first byte).
 */
async function fairness(start, sink) {
  const server = await start();
  const sockets = [];
  try {
    const { port } = new URL(server.url);
    const net = await import('node:net');
    for (let i = 0; i < 16; i += 1) {
      const socket = net.connect(Number(port), '127.0.0.1');
      socket.on('error', () => undefined);
      socket.write(
        `POST /v1/videos HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${FAIRNESS_TOKENS[i % 4]}\r\n` +
          'Content-Type: video/mp4\r\nTransfer-Encoding: chunked\r\n\r\n',
      );
      const drip = () => socket.writable && socket.write('1\r\nx\r\n');
      drip();
      sockets.push(Object.assign(socket, { timer: setInterval(drip, 2000) }));
    }
    // Every trickler is in progress (and has sent its first byte) before the measured upload.
    const inProgress = async () =>
      Number(
        /^relay_uploads_in_progress (\S+)$/m.exec(
          await (await fetch(`${server.url}/metrics`)).text(),
        )?.[1],
      );
    while ((await inProgress()) < 16) await sleep(50);
    await sleep(2500);
    const idleRss = server.rss();
    const started = performance.now();
    const bytes = 6 * MiB;
    const answer = await uploadForm(server.url, bytes, {
      headers: { authorization: `Bearer ${FAIRNESS_TOKENS[4]}` },
    });
    const seconds = (performance.now() - started) / 1000;
    if (answer.status !== 201) throw new Error(`fairness: answer ${answer.status}`);
    await sinkCheck(sink)(answer, bytes);
    const peakRss = server.rss();
    return {
      name: 'fairness',
      bytes,
      seconds,
      mibPerSecond: bytes / MiB / seconds,
      cpuPerGiB: 0,
      sinkCpuPerGiB: null,
      idleRss,
      peakRss,
      rssGrowth: peakRss - idleRss,
      uploads: 17,
      rssGrowthPerUpload: (peakRss - idleRss) / 17,
    };
  } finally {
    for (const s of sockets) {
      clearInterval(s.timer);
      s.destroy();
    }
    await server.stop();
  }
}

/** Debian's jemalloc (libjemalloc2), when installed: the allocator comparison needs it. */
const JEMALLOC = '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2';

function sinkCheck(sink) {
  return async (answer, bytes) => {
    const got = await sinkRecord(sink.url, answer.body.videoId);
    if (got.sha256 !== fileDigest(bytes) || got.size !== bytes) {
      throw new Error(
        `SHA-256 mismatch at the sink for ${answer.body.videoId}: ${JSON.stringify(got)}`,
      );
    }
  };
}

const exportsSoFar = (collector) =>
  fetch(`${collector.url}/stats`).then(async (r) => (await r.json()).exports);

/** Resolves once the collector has had more than `count` exports: a traced run that exported nothing is no run. */
async function exportedPast(collector, count) {
  const deadline = Date.now() + 10_000;
  while ((await exportsSoFar(collector)) <= count) {
    if (Date.now() > deadline) throw new Error('traced: the relay exported no span');
    await sleep(50);
  }
  return exportsSoFar(collector);
}

async function main() {
  const fast = await startProcess(script('bench/sink.mjs'));
  const slow = await startProcess(script('bench/sink.mjs'), { SINK_DELAY_MS: '200' });
  const collector = await startProcess(script('bench/otlp-discard.mjs'));
  const relay =
    (sink, p, c, buffering, extra, flags = IMAGE_FLAGS) =>
    () =>
      startProcess(script('dist/main.js'), relayEnv(sink.url, p, c, buffering, extra), flags);
  // Many slow clients (issue #14): default settings but for the per-client limit (the bench is one
  // principal); each of `mobile` is a phone at 512 KiB/s sending 12 MiB, starts spread over one
  // 5 MiB part's duration (10 s); `many` is 1000 clients at 64 KiB/s within a 1 GiB budget.
  const mobileUploads = Number(option('uploads', 200));
  const manyUploads = Number(option('uploads', 1000));
  const mobileEnv = { UPLOAD_MAX_CONCURRENT_PER_CLIENT: '10000' };
  const mobile = (name, kind, buffering, extra = {}) => ({
    name,
    kind,
    many: true,
    run: () =>
      measure(name, relay(fast, 16, 2, buffering, { ...mobileEnv, ...extra }), {
        sink: fast,
        uploads: Array(mobileUploads).fill(12 * MiB),
        bytesPerSecond: 512 * 1024,
        spreadMs: 10_000,
        verify: sinkCheck(fast),
        scrape: true,
      }),
  });
  const manySlow = [
    mobile(`mobile ${mobileUploads} × 12 MiB at 512 KiB/s`, 'mobile', 'pooled'),
    mobile(`mobile, parts as chunk lists`, 'mobile-chunks', 'chunks'),
    mobile(`mobile, MALLOC_ARENA_MAX=2`, 'mobile-arena', 'pooled', { MALLOC_ARENA_MAX: '2' }),
    ...(existsSync(JEMALLOC)
      ? [mobile(`mobile, jemalloc`, 'mobile-jemalloc', 'pooled', { LD_PRELOAD: JEMALLOC })]
      : []),
    {
      name: `many ${manyUploads} × 3 MiB at 64 KiB/s, UPLOAD_MEMORY_BUDGET=1GiB`,
      kind: 'many',
      many: true,
      budget: 1024 * MiB,
      run: () =>
        measure(
          'many',
          relay(fast, 16, 2, 'pooled', { ...mobileEnv, UPLOAD_MEMORY_BUDGET: '1GiB' }),
          {
            sink: fast,
            uploads: Array(manyUploads).fill(3 * MiB),
            bytesPerSecond: 64 * 1024,
            spreadMs: 10_000,
            verify: sinkCheck(fast),
            scrape: true,
          },
        ),
    },
  ];
  manySlow.push({
    name: 'fairness: 16 trickling uploads from 4 principals, 64 MiB budget; a 6 MiB upload',
    kind: 'fairness',
    many: true,
    run: () => fairness(relay(fast, 16, 2, 'pooled', FAIRNESS_ENV), fast),
  });
  const concurrentEach = Math.max(MiB, Math.floor(size / 4));
  // --baseline <dir>: another build of the relay (e.g. main, `git archive main | tar -x`, built
  // there) run in the same rounds, so "no worse than main" is a ratio within one run.
  const baseline = option('baseline', null);
  // Read once, before any round: a Dockerfile the bench cannot read stops it here, not mid-run.
  const baselineEnv = baseline ? imageAllocatorEnv(join(baseline, 'Dockerfile')) : null;
  const baselineFlags = baseline ? imageNodeFlags(join(baseline, 'Dockerfile')) : null;
  // The baseline runs with its own image's allocator settings, not ours: shipped against shipped.
  const baselineRelay = () => {
    const env = relayEnv(fast.url, 16, 2);
    for (const key of Object.keys(IMAGE_ENV)) delete env[key];
    Object.assign(env, baselineEnv);
    return startProcess(join(baseline, 'dist/main.js'), env, baselineFlags);
  };
  const baselineVariant = baseline
    ? [
        {
          name: 'baseline relay 16 MiB × 2 (--baseline build, its defaults)',
          kind: 'baseline',
          pairOf: (v) => v.kind === 'relay' && v.part === 16 && v.concurrency === 2,
          run: () =>
            measure('baseline', baselineRelay, {
              sink: fast,
              uploads: [size],
              verify: sinkCheck(fast),
            }),
        },
        {
          name: `baseline concurrent 8 × ${concurrentEach / MiB} MiB (--baseline build)`,
          kind: 'baseline-concurrent',
          pairOf: (v) => v.kind === 'concurrent',
          run: () =>
            measure('baseline concurrent', baselineRelay, {
              sink: fast,
              uploads: Array(8).fill(concurrentEach),
              verify: sinkCheck(fast),
            }),
        },
      ]
    : [];
  const variants = [
    ...baselineVariant,
    {
      name: 'floor (busboy drain)',
      kind: 'floor',
      run: () =>
        measure('floor', () => startProcess(script('bench/floor.mjs'), IMAGE_ENV, IMAGE_FLAGS), {
          uploads: [size],
          verify: async (a, b) => {
            if (a.body.bytes !== b) throw new Error('floor lost bytes');
          },
        }),
    },
    ...grid.map(([p, c]) => ({
      name: `relay ${p} MiB × ${c}`,
      kind: 'relay',
      part: p,
      concurrency: c,
      run: () =>
        measure(`relay ${p}x${c}`, relay(fast, p, c), {
          sink: fast,
          uploads: [size],
          verify: sinkCheck(fast),
        }),
    })),
    // What traces cost when on, every request sampled (docs/operations.md#traces): the same
    // upload, spans exported over OTLP (http/protobuf, the default) to a collector that discards
    // them, right next to the untraced run in every round.
    {
      name: 'relay 16 MiB × 2, traced (OTLP, always_on)',
      kind: 'traced',
      pairOf: (v) => v.kind === 'relay' && v.part === 16 && v.concurrency === 2,
      run: async () => {
        let count = await exportsSoFar(collector);
        return measure(
          'relay traced',
          relay(fast, 16, 2, 'pooled', {
            OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
            OTEL_TRACES_SAMPLER: 'always_on',
            OTEL_BSP_SCHEDULE_DELAY: '500',
          }),
          {
            sink: fast,
            uploads: [size],
            // The warm-up's spans exported: the exporter's own code is loaded before measuring.
            warm: async () => (count = await exportedPast(collector, count)),
            // And the measured upload's spans, within the measured time.
            verify: async (answer, bytes) => {
              await sinkCheck(fast)(answer, bytes);
              await exportedPast(collector, count);
            },
          },
        );
      },
    },
    {
      name: 'relay 16 MiB × 2, parts as chunk lists',
      kind: 'relay-chunks',
      run: () =>
        measure('relay chunks', relay(fast, 16, 2, 'chunks'), {
          sink: fast,
          uploads: [size],
          verify: sinkCheck(fast),
        }),
    },
    // What the image's allocator setting is worth: the same relay with glibc's defaults.
    ...(Object.keys(IMAGE_ENV).length > 0
      ? [
          {
            name: `relay 16 MiB × 2, without the image's ${Object.keys(IMAGE_ENV).join(', ')}`,
            kind: 'relay-glibc-default',
            run: () =>
              measure(
                'relay glibc default',
                () => {
                  const env = relayEnv(fast.url, 16, 2);
                  for (const key of Object.keys(IMAGE_ENV)) delete env[key];
                  return startProcess(script('dist/main.js'), env, IMAGE_FLAGS);
                },
                {
                  sink: fast,
                  uploads: [size],
                  verify: sinkCheck(fast),
                },
              ),
          },
        ]
      : []),
    {
      name: 'naive (multer + official client)',
      kind: 'naive',
      run: () =>
        measure(
          'naive',
          () =>
            startProcess(
              script('bench/naive.mjs'),
              { ...IMAGE_ENV, SINK_URL: fast.url },
              IMAGE_FLAGS,
            ),
          {
            sink: fast,
            uploads: [size],
            verify: sinkCheck(fast),
          },
        ),
    },
    {
      name: `concurrent 8 × ${concurrentEach / MiB} MiB`,
      kind: 'concurrent',
      run: () =>
        measure('concurrent', relay(fast, 16, 2), {
          sink: fast,
          uploads: Array(8).fill(concurrentEach),
          verify: sinkCheck(fast),
        }),
    },
    // What the image's node flags are worth where they matter: the same 8 uploads without them.
    ...(IMAGE_FLAGS.length > 0
      ? [
          {
            name: `concurrent 8 × ${concurrentEach / MiB} MiB, without the image's ${IMAGE_FLAGS.join(' ')}`,
            kind: 'concurrent-no-flags',
            pairOf: (v) => v.kind === 'concurrent',
            run: () =>
              measure('concurrent without flags', relay(fast, 16, 2, 'pooled', {}, []), {
                sink: fast,
                uploads: Array(8).fill(concurrentEach),
                verify: sinkCheck(fast),
              }),
          },
        ]
      : []),
    {
      name: 'slow upstream (200 ms per part)',
      kind: 'slow',
      run: () =>
        measure('slow', relay(slow, 16, 2), {
          sink: slow,
          uploads: [size],
          verify: sinkCheck(slow),
        }),
    },
    // Minutes each: not in --quick (CI); run them with --only mobile or --only many.
    ...(quick && !option('only', null) ? [] : manySlow),
  ];
  // --only <regex>: a subset, for a focused comparison (written under bench/.work, like --quick).
  const only = option('only', null);
  if (only)
    variants.splice(0, variants.length, ...variants.filter((v) => new RegExp(only).test(v.name)));
  const runs = new Map(variants.map((v) => [v.name, []]));
  const total = rounds * variants.length;
  let done = 0;
  // A baseline runs right next to the variant it is compared with, first in odd rounds and second
  // in even ones: the machine drifts over a round (the first variant after the slow-client runs
  // found it rested), so a fixed order favoured whichever came first.
  const order = (round) => {
    const paired = variants.filter((p) => p.pairOf && variants.some((v) => p.pairOf(v)));
    const alone = variants.filter((p) => p.pairOf && !paired.includes(p));
    return [
      ...alone,
      ...variants
        .filter((v) => !v.pairOf)
        .flatMap((v) => {
          const partners = paired.filter((p) => p.pairOf(v));
          return round % 2 === 1 ? [...partners, v] : [v, ...partners];
        }),
    ];
  };
  for (let round = 1; round <= rounds; round++) {
    for (const v of order(round)) {
      process.stderr.write(`\r[${++done}/${total}] round ${round}: ${v.name}`.padEnd(70));
      runs.get(v.name).push(await v.run());
    }
  }
  process.stderr.write('\n');
  await Promise.all([fast.stop(), slow.stop(), collector.stop()]);
  const summary = variants.map(({ run: _run, pairOf: _pairOf, ...v }) => {
    const rs = runs.get(v.name);
    const pick = (key) => ({
      min: Math.min(...rs.map((r) => r[key])),
      median: median(rs.map((r) => r[key])),
      max: Math.max(...rs.map((r) => r[key])),
    });
    return {
      ...v,
      runs: rs,
      seconds: pick('seconds'),
      mibPerSecond: pick('mibPerSecond'),
      cpuPerGiB: pick('cpuPerGiB'),
      rssGrowth: pick('rssGrowth'),
      rssGrowthPerUpload: pick('rssGrowthPerUpload'),
      peakRss: pick('peakRss'),
      idleRss: pick('idleRss'),
    };
  });
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: (await import('node:os')).cpus().length,
    size,
    rounds,
    quick,
    imageEnv: IMAGE_ENV,
    imageFlags: IMAGE_FLAGS,
    baselineImageEnv: baselineEnv,
    baselineImageFlags: baselineFlags,
  };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(
    join(outDir, 'benchmarks.json'),
    JSON.stringify({ meta, variants: summary }, null, 2) + '\n',
  );
  const { markdown, svg } = await renderReport(meta, summary);
  writeFileSync(join(outDir, 'benchmarks.svg'), svg);
  writeFileSync(join(outDir, 'benchmarks.md'), markdown);
  process.stderr.write(`results in ${outDir}/benchmarks.md\n`);
}

main().catch((err) => {
  process.stderr.write(`\nbenchmark failed: ${err.stack ?? err}\n`);
  process.exit(1);
});
