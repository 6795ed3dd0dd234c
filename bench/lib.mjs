// Process handling and measurement for the benchmark: spawn a server, read its CPU and RSS from /proc.
import { spawn } from 'node:child_process';
import { createHash, randomFillSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import process from 'node:process';
import { Agent, request, setGlobalDispatcher } from 'undici';

// A thousand clients connecting at once can wait on the relay's accept queue longer than
// undici's 10 s default: that is the bench's own limit, not the relay's answer.
setGlobalDispatcher(new Agent({ connect: { timeout: 120_000 } }));

const TICKS = 100; // USER_HZ on Linux
export const MiB = 1024 * 1024;

/**
 * Starts `node [nodeFlags] <script>` and waits for its first stdout line: {"url": …} or the relay's
 * listening line.
 */
export async function startProcess(script, env = {}, nodeFlags = []) {
  const child = spawn(process.execPath, [...nodeFlags, script], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start: ${output}`)), 15_000);
    const onData = (d) => {
      output += d.toString();
      const match = /"url":"(http:\/\/[^"]+)"/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (d) => (output += d.toString()));
    child.on('exit', (code) => reject(new Error(`${script} exited ${code}: ${output}`)));
  });
  child.stdout.resume();
  return {
    url,
    pid: child.pid,
    cpuSeconds: () => cpuSeconds(child.pid),
    rss: () => rss(child.pid),
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', resolve);
        child.kill('SIGKILL');
      }),
  };
}

export function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS; // utime + stime
}

export function rss(pid) {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
}

/** Samples a process's RSS every 20 ms; `stop()` gives the peak. */
export function rssSampler(proc) {
  let peak = proc.rss();
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, proc.rss());
    } catch {
      /* exited */
    }
  }, 20);
  return { stop: () => (clearInterval(timer), peak) };
}

/**
 * The test file: a random 16 MiB block repeated, so the client spends almost nothing making it.
 * Its SHA-256 is computed once per size.
 */
const BLOCK = randomFillSync(Buffer.allocUnsafe(16 * MiB));
const digests = new Map();
export function fileDigest(size) {
  if (!digests.has(size)) {
    const hash = createHash('sha256');
    for (let left = size; left > 0; left -= BLOCK.length)
      hash.update(left >= BLOCK.length ? BLOCK : BLOCK.subarray(0, left));
    digests.set(size, hash.digest('hex'));
  }
  return digests.get(size);
}

function* fileChunks(size) {
  const chunk = MiB;
  for (let offset = 0; offset < size; offset += chunk) {
    const at = offset % BLOCK.length;
    yield BLOCK.subarray(at, at + Math.min(chunk, size - offset));
  }
}

/**
 * The same bytes as fileChunks, sent at `bytesPerSecond` in 16 KiB writes like a phone on a
 * mobile link: paced from the previous write, so a client held back by the relay (backpressure)
 * resumes at its link's speed instead of bursting to catch up.
 */
async function* pacedChunks(size, bytesPerSecond) {
  const piece = 16 * 1024;
  const interval = (piece / bytesPerSecond) * 1000;
  let due = performance.now();
  for (const chunk of fileChunks(size)) {
    for (let at = 0; at < chunk.length; at += piece) {
      const now = performance.now();
      due = Math.max(due + interval, now - interval);
      if (due > now) await new Promise((r) => setTimeout(r, due - now));
      yield chunk.subarray(at, at + piece);
    }
  }
}

/**
 * Uploads `size` bytes as a multipart form; resolves with the answer and the time to it.
 * `bytesPerSecond`: pace the file like a slow client (default: as fast as the relay takes it).
 */
export async function uploadForm(url, size, { bytesPerSecond, headers = {} } = {}) {
  const boundary = `----bench${randomBytes(8).toString('hex')}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nbench\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="bench.mp4"\r\nContent-Type: video/mp4\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  function* body() {
    yield head;
    yield* fileChunks(size);
    yield tail;
  }
  async function* pacedBody() {
    yield head;
    yield* pacedChunks(size, bytesPerSecond);
    yield tail;
  }
  const started = performance.now();
  const res = await request(`${url}/v1/videos`, {
    method: 'POST',
    headers: {
      'content-type': `multipart/form-data; boundary=${boundary}`,
      'content-length': String(head.length + size + tail.length),
      ...headers,
    },
    body: bytesPerSecond ? pacedBody() : body(),
    headersTimeout: 600_000,
    bodyTimeout: 600_000,
  });
  const answer = await res.body.json();
  return { status: res.statusCode, body: answer, seconds: (performance.now() - started) / 1000 };
}

/**
 * Polls the relay's /metrics every 500 ms for the memory budget's own accounting; `stop()` gives
 * the peak bytes reserved and buffered (null for a build without those gauges), so RSS can be
 * compared with what the relay knows it holds. `breakdown` splits the scrape where the relay held
 * the most file bytes into what it held, other buffers, V8's heap and the rest (sockets, the allocator), each
 * as growth over the first scrape: where RSS above the budget comes from.
 */
export function budgetSampler(url) {
  const peak = { reserved: null, buffered: null, waiting: null, breakdown: null };
  const read = (text, name) => {
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  let idle = null;
  let highest = null;
  let busy = false;
  const scrape = async () => {
    if (busy) return;
    busy = true;
    try {
      const res = await request(`${url}/metrics`);
      const text = await res.body.text();
      for (const [key, name] of [
        ['reserved', 'relay_memory_reserved_bytes'],
        ['buffered', 'relay_bytes_buffered'],
        ['waiting', 'relay_memory_waiting_uploads'],
      ]) {
        const v = read(text, name);
        if (v !== null) peak[key] = Math.max(peak[key] ?? 0, v);
      }
      const now = {
        rss: read(text, 'process_resident_memory_bytes'),
        held: read(text, 'relay_bytes_buffered'),
        buffers: read(text, 'nodejs_external_memory_bytes'),
        heap: read(text, 'nodejs_heap_size_total_bytes'),
      };
      if (Object.values(now).some((v) => v === null)) return;
      idle ??= now;
      // The moment the relay held the most file bytes: RSS rarely shrinks, so its highest scrape
      // can come long after, and the most Buffers is often just after parts are let go.
      if (!highest || now.held > highest.held) highest = now;
    } catch {
      /* a scrape that fails under load is skipped */
    } finally {
      busy = false;
    }
  };
  // The first scrape is the idle figures: `ready` resolves once it is in (or failed, then the next).
  const ready = scrape();
  const timer = setInterval(scrape, 500);
  return {
    ready,
    stop: () => {
      clearInterval(timer);
      if (idle && highest && highest !== idle) {
        const held = highest.held - idle.held;
        peak.breakdown = {
          rss: highest.rss - idle.rss,
          held,
          // External memory is every Buffer's bytes: the blocks holding parts, blocks kept idle
          // for reuse, the socket reads not yet collected.
          otherBuffers: highest.buffers - idle.buffers - held,
          heap: highest.heap - idle.heap,
        };
        peak.breakdown.rest =
          peak.breakdown.rss - held - peak.breakdown.otherBuffers - peak.breakdown.heap;
      }
      return peak;
    },
  };
}

export async function sinkRecord(sinkUrl, videoId) {
  const res = await request(`${sinkUrl}/_sink/videos/${videoId}`);
  return res.body.json();
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * The allocator settings an image runs with: `ENV MALLOC_…=…` in its Dockerfile's final stage, read
 * from there so the bench measures what ships. A build is measured with its own image's settings
 * (the baseline's from its own Dockerfile); a MALLOC_ line this cannot read stops the run.
 */
export function imageAllocatorEnv(dockerfile) {
  if (!existsSync(dockerfile)) return {};
  const finalStage = finalStageLines(dockerfile);
  const env = {};
  for (const line of finalStage) {
    if (!/MALLOC_/.test(line) || /^\s*#/.test(line)) continue;
    const m = /^\s*ENV\s+(.*)$/i.exec(line);
    const pairs = m ? [...m[1].matchAll(/(MALLOC_\w+)=("([^"]*)"|'([^']*)'|(\S+))/g)] : [];
    for (const p of pairs) env[p[1]] = p[3] ?? p[4] ?? p[5];
    if (pairs.length === 0 || Object.values(env).some((v) => !/^\d+$/.test(v)))
      throw new Error(`${dockerfile}: cannot read this allocator setting: ${line.trim()}`);
  }
  return env;
}

/**
 * The flags the image gives node (`CMD ["node", <flags>, "dist/main.js"]` in its Dockerfile's final
 * stage), so the bench starts the relay as the image does; a CMD this cannot read stops the run.
 */
export function imageNodeFlags(dockerfile) {
  if (!existsSync(dockerfile)) return [];
  const cmd = finalStageLines(dockerfile).findLast((l) => /^\s*CMD\s/i.test(l));
  if (!cmd) throw new Error(`${dockerfile}: its final stage has no CMD to start the relay as`);
  let argv;
  try {
    argv = JSON.parse(cmd.replace(/^\s*CMD\s+/i, ''));
  } catch {
    argv = null;
  }
  const script = Array.isArray(argv) ? argv.findIndex((a) => /\.m?js$/.test(a)) : -1;
  const flags = script > 0 ? argv.slice(1, script) : null;
  if (argv?.[0] !== 'node' || !flags || flags.some((f) => !f.startsWith('--')))
    throw new Error(`${dockerfile}: cannot read node's flags from this CMD: ${cmd.trim()}`);
  return flags;
}

/**
 * The final stage's instructions, one per line: comment lines dropped first (Docker does not
 * continue them), then `\` continuations joined.
 */
function finalStageLines(dockerfile) {
  const lines = readFileSync(dockerfile, 'utf8')
    .split(/\r?\n/)
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\[ \t]*\n/g, ' ')
    .split('\n');
  return lines.slice(lines.findLastIndex((l) => /^\s*FROM\s/i.test(l)));
}
