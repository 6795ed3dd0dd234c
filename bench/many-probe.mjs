// A probe for `many`'s memory, not part of `npm run bench`: the same load (N clients of 3 MiB at
// 64 KiB/s, starts spread over 10 s, a 1 GiB budget, the image's allocator setting and node
// flags), scraping /metrics every 500 ms, then printing RSS growth and two splits as growth over
// the idle scrape: where the relay held the most file bytes, and where RSS was highest, with V8's
// heap spaces (committed and used) at the first. docs/performance-notes.md quotes its runs.
//   node bench/many-probe.mjs                      N=1000, this build's dist/main.js
//   N=300 SCRIPT=other/dist/main.js FLAGS='…' ENV='{"UPLOAD_…":"…"}' node bench/many-probe.mjs
import { join } from 'node:path';
import process from 'node:process';
import { request } from 'undici';
import { MiB, imageAllocatorEnv, imageNodeFlags, startProcess, uploadForm } from './lib.mjs';

const ROOT = new URL('..', import.meta.url).pathname;
const N = Number(process.env.N ?? 1000);
const SCRIPT = process.env.SCRIPT ?? join(ROOT, 'dist/main.js');
const FLAGS =
  process.env.FLAGS?.split(' ').filter(Boolean) ?? imageNodeFlags(join(ROOT, 'Dockerfile'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const sink = await startProcess(join(ROOT, 'bench/sink.mjs'));
const relay = await startProcess(
  SCRIPT,
  {
    ...imageAllocatorEnv(join(ROOT, 'Dockerfile')),
    NODE_ENV: 'production',
    RELAY_ALLOW_ANONYMOUS: 'true',
    APIVIDEO_API_KEY: 'probe-key',
    APIVIDEO_BASE_URL: sink.url,
    UPLOAD_PART_SIZE: '16MiB',
    UPLOAD_PART_CONCURRENCY: '2',
    UPLOAD_MAX_CONCURRENT_PER_CLIENT: '10000',
    UPLOAD_MEMORY_BUDGET: '1GiB',
    LOG_LEVEL: 'info',
    PORT: '0',
    HOST: '127.0.0.1',
    ...JSON.parse(process.env.ENV ?? '{}'),
  },
  FLAGS,
).catch(async (err) => {
  await sink.stop();
  throw err;
});

async function scrape() {
  const text = await (await request(`${relay.url}/metrics`)).body.text();
  const figures = { rss: relay.rss() };
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    figures[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return figures;
}

try {
  await uploadForm(relay.url, MiB); // warm-up, as the bench does
  await sleep(300);
  const idle = await scrape();
  let mostHeld = idle;
  let highest = idle;
  let peakRss = idle.rss;
  let done = false;
  const poll = (async () => {
    while (!done) {
      try {
        const now = await scrape();
        if (now.relay_bytes_buffered > mostHeld.relay_bytes_buffered) mostHeld = now;
        if (now.rss > highest.rss) highest = now;
      } catch {
        /* a scrape that fails under load is skipped */
      }
      await sleep(500);
    }
  })();
  const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, relay.rss())), 100);
  let answers;
  try {
    answers = await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        await sleep((10_000 * i) / N);
        return uploadForm(relay.url, 3 * MiB, { bytesPerSecond: 64 * 1024 });
      }),
    );
  } finally {
    // A failed upload must not leave the poll and the timer keeping the process alive.
    done = true;
    clearInterval(rssTimer);
    await poll;
  }
  const growth = (at, name) => +((at[name] - idle[name]) / MiB).toFixed(1);
  const split = (at) => ({
    rss: growth(at, 'rss'),
    fileBytesHeld: growth(at, 'relay_bytes_buffered'),
    reserved: growth(at, 'relay_memory_reserved_bytes'),
    overhead: growth(at, 'relay_memory_overhead_bytes'),
    buffers: growth(at, 'nodejs_external_memory_bytes'),
    heapCommitted: growth(at, 'nodejs_heap_size_total_bytes'),
    heapUsed: growth(at, 'nodejs_heap_size_used_bytes'),
    waiting: at.relay_memory_waiting_uploads,
  });
  const spaces = {};
  for (const name of Object.keys(mostHeld))
    if (/^nodejs_heap_space_size_(total|used)_bytes/.test(name)) {
      const mib = growth(mostHeld, name);
      if (Math.abs(mib) >= 0.5) spaces[name.slice(23)] = mib;
    }
  const result = {
    node: process.version,
    uploads: N,
    refused: answers.filter((a) => a.status !== 201).length,
    rssGrowthMiB: +((peakRss - idle.rss) / MiB).toFixed(1),
    whereMostHeld: { ...split(mostHeld), heapSpaces: spaces },
    whereRssHighest: split(highest),
  };
  process.stdout.write(`${JSON.stringify(result, null, 1)}\n`);
} finally {
  await relay.stop();
  await sink.stop();
}
