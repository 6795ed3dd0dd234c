// Process handling and measurement for the benchmark: spawn a server, read its CPU and RSS from /proc.
import { spawn } from 'node:child_process';
import { createHash, randomFillSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import process from 'node:process';
import { request } from 'undici';

const TICKS = 100; // USER_HZ on Linux
export const MiB = 1024 * 1024;

/** Starts `node <script>` and waits for its first stdout line: {"url": …} or the relay's listening line. */
export async function startProcess(script, env = {}) {
  const child = spawn(process.execPath, [script], {
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

/** Uploads `size` bytes as a multipart form; resolves with the answer and the time to it. */
export async function uploadForm(url, size) {
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
  const started = performance.now();
  const res = await request(`${url}/v1/videos`, {
    method: 'POST',
    headers: {
      'content-type': `multipart/form-data; boundary=${boundary}`,
      'content-length': String(head.length + size + tail.length),
    },
    body: body(),
    headersTimeout: 600_000,
    bodyTimeout: 600_000,
  });
  const answer = await res.body.json();
  return { status: res.statusCode, body: answer, seconds: (performance.now() - started) / 1000 };
}

export async function sinkRecord(sinkUrl, videoId) {
  const res = await request(`${sinkUrl}/_sink/videos/${videoId}`);
  return res.body.json();
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
