/**
 * The nginx snippet in docs/deploy/nginx-relay.conf, run as written in front of the relay: parts
 * reach api.video while the client is still sending. The same nginx with its default (buffering)
 * settings holds the whole body first, which is why the snippet exists.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { inspectVideo } from '../helpers/emulator';
import { useRelay } from '../helpers/fixture';
import { freePort } from '../helpers/ports';
import { requirePrograms } from '../helpers/prerequisites';
import { eventually } from '../helpers/wait';

const SNIPPET = readFileSync(join(__dirname, '../../docs/deploy/nginx-relay.conf'), 'utf8');
const dirs: string[] = [];
const nginxes: ChildProcess[] = [];

beforeAll(() => requirePrograms('nginx'));
afterAll(async () => {
  await Promise.all(
    nginxes
      .filter((n) => n.exitCode === null && n.signalCode === null)
      .map((n) => (n.kill('SIGTERM'), once(n, 'exit'))),
  );
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const fixture = useRelay({ env: { UPLOAD_PART_SIZE: '5MiB', LOG_LEVEL: 'warn' } });
const emulator = () => fixture.emulator;

async function startNginx(location: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'relay-nginx-'));
  dirs.push(dir);
  const port = await freePort();
  const relayPort = new URL(fixture.url).port;
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn; user root;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy;
  upstream upload_relay { server 127.0.0.1:${relayPort}; keepalive 16; }
  server { listen 127.0.0.1:${port};
${location}
  }
}`,
  );
  const nginx = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'ignore' });
  nginxes.push(nginx);
  for (let i = 0; i < 50; i++) {
    const ok = await request(`http://127.0.0.1:${port}/healthz`).then(
      (r) => (r.body.dump(), r.statusCode === 200),
      () => false,
    );
    if (ok) return `http://127.0.0.1:${port}`;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nginx did not start: ${readFileSync(join(dir, 'error.log'), 'utf8')}`);
}

/**
 * Sends 12 MiB, then reports whether a part reached the emulator before the client went on. With
 * streaming, a part comes however slow the machine (waited for up to `patienceMs`); with buffering
 * it never comes before the rest is sent, so a shorter look proves as much.
 */
async function partsWhileSending(baseUrl: string, patienceMs: number) {
  const first = randomBytesOf(12 * MiB);
  const rest = randomBytesOf(8 * MiB);
  emulator().stats.reset();
  let releaseRest!: () => void;
  const gate = new Promise<void>((resolve) => (releaseRest = resolve));
  async function* body() {
    yield first;
    await gate;
    yield rest;
  }
  const answer = request(`${baseUrl}/v1/videos?title=via-nginx`, {
    method: 'POST',
    headers: { 'content-type': 'video/mp4', 'content-length': String(20 * MiB) },
    body: Readable.from(body()),
  });
  const streamed = await eventually(() => emulator().stats.partRequests > 0, patienceMs).then(
    () => true,
    () => false,
  );
  releaseRest();
  const res = await answer;
  const video = (await res.body.json()) as { videoId: string };
  expect(res.statusCode).toBe(201);
  expect(inspectVideo(emulator(), video.videoId)).toMatchObject({
    completed: true,
    sha256: sha256([first, rest]),
  });
  return streamed;
}

test('with the documented snippet, parts go to api.video while the client is still sending', async () => {
  const url = await startNginx(SNIPPET);
  expect(await partsWhileSending(url, 30_000)).toBe(true);
});

test('control: nginx’s default request buffering holds the body back (what the snippet prevents)', async () => {
  const url = await startNginx(
    'location / { proxy_pass http://upload_relay; client_max_body_size 0; }',
  );
  expect(await partsWhileSending(url, 3000)).toBe(false);
});
