/**
 * The relay finds its Redis through Sentinel (REDIS_SENTINELS): a real redis-server as the
 * primary, with a password, and a real Sentinel (`redis-server --sentinel`) that names it. REDIS_URL's
 * host is a name that does not resolve, so the upload can only work through the Sentinel.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { RunningEmulator } from '../../src/emulator/app';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { TEST_API_KEY, inspectVideo, startTestEmulator } from '../helpers/emulator';
import { startRelayProcess } from '../helpers/process';
import { tusUpload } from '../helpers/tus';
import { eventually } from '../helpers/wait';

const PASSWORD = `pw-${Math.random().toString(36).slice(2)}-sentinel`;
const NAME = 'relay-primary';

let dir: string;
let emulator: RunningEmulator;
const servers: ChildProcess[] = [];
let primaryPort: number;
let sentinelPort: number;

/** A port free right now: redis-server has no "pick one for me". */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** Starts redis-server and resolves once its log matches `ready`; rejects on exit or after 15 s. */
function startRedis(args: string[], ready: RegExp): Promise<void> {
  const child = spawn('redis-server', args);
  servers.push(child);
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server not ready:\n${log}`)), 15_000);
    const look = (d: Buffer) => {
      log += d.toString();
      if (ready.test(log)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', look);
    child.stderr!.on('data', look);
    child.on('exit', () => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited:\n${log}`));
    });
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'relay-sentinel-'));
  primaryPort = await freePort();
  sentinelPort = await freePort();
  await startRedis(
    ['--port', String(primaryPort), '--bind', '127.0.0.1', '--requirepass', PASSWORD, '--save', '', '--appendonly', 'no', '--dir', dir],
    /Ready to accept connections/,
  ); // prettier-ignore
  // Sentinel rewrites its configuration file, so it gets one of its own.
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(
    conf,
    [
      `port ${sentinelPort}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${NAME} 127.0.0.1 ${primaryPort} 1`,
      `sentinel auth-pass ${NAME} ${PASSWORD}`,
      '',
    ].join('\n'),
  );
  await startRedis([conf, '--sentinel'], new RegExp(`\\+monitor master ${NAME}`));
  emulator = await startTestEmulator();
});

afterAll(async () => {
  for (const child of servers.reverse()) {
    if (child.exitCode !== null) continue;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  await emulator?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('REDIS_SENTINELS: the relay asks the Sentinel for the primary, uploads resume through it byte-exact, and the password stays hidden', async () => {
  const relay = await startRelayProcess({
    APIVIDEO_API_KEY: TEST_API_KEY,
    APIVIDEO_BASE_URL: emulator.url,
    REDIS_URL: `redis://:${PASSWORD}@primary.invalid:6379`,
    REDIS_SENTINELS: `127.0.0.1:${sentinelPort}`,
    REDIS_SENTINEL_NAME: NAME,
    UPLOAD_PART_SIZE: '5MiB',
  });
  const primary = new Redis({ host: '127.0.0.1', port: primaryPort, password: PASSWORD });
  try {
    expect(relay.output()).toContain(
      `session store: redis redis://${NAME} (the primary) via Sentinels 127.0.0.1:${sentinelPort} (password hidden)`,
    );
    // Ready once its session store is connected (readiness covers it); until then, 503s.
    await eventually(async () => (await fetch(`${relay.url}/readyz`)).status === 200, 10_000);
    const data = randomBytesOf(11 * MiB + 5);
    const result = await tusUpload(`${relay.url}/v1/uploads`, data, {
      chunkSize: 3 * MiB,
      retryDelays: [],
    });
    expect(inspectVideo(emulator, result.videoId!)).toMatchObject({
      completed: true,
      size: data.length,
      sha256: sha256(data),
    });
    const id = new URL(result.url).pathname.split('/').pop()!;
    expect((await primary.keys('*')).some((key) => key.includes(id))).toBe(true);
    expect(relay.output()).not.toContain(PASSWORD);
  } finally {
    primary.disconnect();
    expect(await relay.stop('SIGTERM')).toBe(0);
  }
});
