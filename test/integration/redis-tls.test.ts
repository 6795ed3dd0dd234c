/**
 * The relay against a Redis that speaks only TLS, with a private CA, and a password that comes from
 * a file (REDIS_URL_FILE): a real redis-server (Debian's build has TLS) on its own port, the
 * relay as its own process, tus-js-client as the client, bytes checked at the emulator.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { request } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import { makeTestPki, type TestPki } from '../helpers/certs';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { TEST_API_KEY, inspectVideo, startTestEmulator } from '../helpers/emulator';
import { startRelayProcess, type RelayProcess } from '../helpers/process';
import { tusUpload } from '../helpers/tus';
import { eventually } from '../helpers/wait';

const PASSWORD = `pw-${Math.random().toString(36).slice(2)}-redis-tls`;

let pki: TestPki;
let emulator: RunningEmulator;
let redis: ChildProcess;
let port: number;

/** A port free right now: redis-server has no "pick one for me" for its TLS port. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** Resolves when the process's output matches; rejects when it exits first, or after 15 s. */
function outputMatches(child: ChildProcess, pattern: RegExp, read: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no ${String(pattern)} in 15 s:\n${read()}`)),
      15_000,
    );
    const look = () => {
      if (pattern.test(read())) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', look);
    child.stderr!.on('data', look);
    child.on('exit', () => {
      clearTimeout(timer);
      reject(new Error(`exited before ${String(pattern)}:\n${read()}`));
    });
    look();
  });
}

beforeAll(async () => {
  pki = makeTestPki();
  writeFileSync(join(pki.dir, 'server.key'), pki.key);
  port = await freePort();
  redis = spawn('redis-server', [
    '--port', '0',
    '--tls-port', String(port),
    '--bind', '127.0.0.1',
    '--tls-cert-file', join(pki.dir, 'server.pem'),
    '--tls-key-file', join(pki.dir, 'server.key'),
    '--tls-ca-cert-file', pki.caFile,
    '--tls-auth-clients', 'no',
    '--requirepass', PASSWORD,
    '--save', '',
    '--appendonly', 'no',
  ]); // prettier-ignore
  let log = '';
  redis.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  redis.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  await outputMatches(redis, /Ready to accept connections/, () => log);
  emulator = await startTestEmulator();
});

afterAll(async () => {
  const exited = new Promise((resolve) => redis?.once('exit', resolve));
  redis?.kill('SIGTERM');
  await exited;
  await emulator?.close();
  pki?.remove();
});

function relayWith(env: Record<string, string>): Promise<RelayProcess> {
  const urlFile = join(pki.dir, 'redis-url');
  writeFileSync(urlFile, `rediss://:${PASSWORD}@localhost:${port}\n`);
  return startRelayProcess({
    APIVIDEO_API_KEY: TEST_API_KEY,
    APIVIDEO_BASE_URL: emulator.url,
    REDIS_URL_FILE: urlFile,
    UPLOAD_PART_SIZE: '5MiB',
    ...env,
  });
}

test('rediss:// with REDIS_CA_FILE: sessions live in the TLS Redis, the upload is byte-exact, the password is never logged', async () => {
  const relay = await relayWith({ REDIS_CA_FILE: pki.caFile });
  const client = new Redis(`rediss://:${PASSWORD}@localhost:${port}`, {
    tls: { ca: readFileSync(pki.caFile, 'utf8') },
  });
  try {
    expect(relay.output()).toContain(
      `session store: redis rediss://localhost:${port} (password hidden, CA from ${pki.caFile})`,
    );
    // Ready once its session store is connected (readiness covers it); until then, 503s.
    await eventually(async () => (await fetch(`${relay.url}/readyz`)).status === 200, 10_000);
    const data = randomBytesOf(11 * MiB + 7);
    // 3 MiB chunks are shorter than a part: each one's bytes wait in Redis as the tail.
    const result = await tusUpload(`${relay.url}/v1/uploads`, data, {
      chunkSize: 3 * MiB,
      retryDelays: [],
    });
    expect(result.videoId).toBeDefined();
    expect(inspectVideo(emulator, result.videoId!)).toMatchObject({
      completed: true,
      size: data.length,
      sha256: sha256(data),
    });
    // The finished session is kept (GET /v1/uploads/{id} answers from it), in this Redis only.
    const keys = await client.keys('*');
    expect(keys.some((key) => key.includes(new URL(result.url).pathname.split('/').pop()!))).toBe(
      true,
    );
    expect(relay.output()).not.toContain(PASSWORD);
  } finally {
    client.disconnect();
    expect(await relay.stop('SIGTERM')).toBe(0);
  }
});

test('rediss:// without the CA: the private certificate is refused, and the upload fails instead of losing its session', async () => {
  const relay = await relayWith({});
  try {
    expect(relay.output()).toContain(
      `session store: redis rediss://localhost:${port} (password hidden)`,
    );
    const created = await request(`${relay.url}/v1/uploads`, {
      method: 'POST',
      headers: { 'tus-resumable': '1.0.0', 'upload-length': String(6 * MiB) },
    });
    await created.body.dump();
    expect(created.statusCode).toBeGreaterThanOrEqual(500);
    await outputMatches(
      relay.child,
      /"err":"[^"]*(certificate|verify)[^"]*"[^\n]*Redis connection trouble/,
      relay.output,
    );
    expect(relay.output()).not.toContain(PASSWORD);
  } finally {
    expect(await relay.stop('SIGTERM')).toBe(0);
  }
});
