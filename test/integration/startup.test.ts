/** `node dist/main.js` as users run it: configuration errors, the production refusal, and the out-of-the-box emulator. */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { basicAuth } from '../helpers/auth';
import { tempFile, type TempFile, MiB } from '../helpers/data';
import { TEST_API_KEY, inspectVideo, startTestEmulator } from '../helpers/emulator';
import { freePort } from '../helpers/ports';
import { requirePrograms } from '../helpers/prerequisites';
import { ROOT, runToExit, startRelayProcess } from '../helpers/process';
import { uploadRaw } from '../helpers/upload';

const exec = promisify(execFile);

test('invalid settings: exit 1 with every problem named, and no stack trace', async () => {
  const { code, stdout, stderr } = await runToExit({
    PORT: 'eighty',
    UPLOAD_PART_SIZE: '1MiB',
    UPLOAD_PART_CONCURRENCY: '99',
  });
  expect(code).toBe(1);
  expect(stderr).toMatch(/^Invalid configuration:\n/);
  for (const name of ['PORT', 'UPLOAD_PART_SIZE', 'UPLOAD_PART_CONCURRENCY'])
    expect(stderr).toContain(`  - ${name}: `);
  expect(stderr).not.toMatch(/\n\s+at /);
  expect(stdout).toBe('');
});

test('NODE_ENV=production without a key: refused, with a clear message', async () => {
  const { code, stderr } = await runToExit({ NODE_ENV: 'production' });
  expect(code).toBe(1);
  expect(stderr).toContain('APIVIDEO_API_KEY: required when NODE_ENV=production');
});

describe('no key outside production', () => {
  let file: TempFile;
  beforeAll(async () => (file = await tempFile(7 * MiB + 3, 'hello world.mp4')));
  afterAll(() => file.remove());

  test('starts the built-in emulator, says so in one line, and curl uploads through it byte-exact', async () => {
    requirePrograms('curl');
    const relay = await startRelayProcess({
      UPLOAD_PART_SIZE: '5MiB',
      UPLOAD_MEMORY_BUDGET: '48MiB',
    });
    try {
      const lines = relay
        .output()
        .split('\n')
        .filter((l) => l.includes('built-in api.video emulator'));
      expect(lines).toHaveLength(1);
      // The memory budget, logged at start-up with where its figure came from.
      const listening = relay
        .output()
        .split('\n')
        .find((l) => l.includes('relay listening'))!;
      expect(JSON.parse(listening)).toMatchObject({
        memoryBudgetBytes: 48 * MiB,
        memoryBudgetFrom: 'UPLOAD_MEMORY_BUDGET',
      });
      expect(listening).toContain('at most 48 MiB together, file bytes and 128 KiB each');
      // 48 MiB less two 5 MiB parts is 38 MiB: the own cost of 304 uploads, fewer than the
      // 1000 UPLOAD_MAX_CONCURRENT lets in, so the operator is told.
      expect(JSON.parse(listening)).toMatchObject({ memoryBudgetUploadsCounted: 304 });
      const small = relay
        .output()
        .split('\n')
        .find((l) => l.includes('memory_budget_small'));
      expect(JSON.parse(small!)).toMatchObject({
        memoryBudgetUploadsCounted: 304,
        maxConcurrentUploads: 1000,
      });
      const emulatorUrl = (JSON.parse(lines[0]!) as { emulator: string }).emulator;
      expect(emulatorUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const { stdout } = await exec('curl', [
        '-sS',
        '-F',
        'tags=curl',
        '-F',
        `file=@${file.path}`,
        `${relay.url}/v1/videos`,
      ]);
      const video = JSON.parse(stdout) as { videoId: string; title: string };
      expect(video.title).toBe('hello world');
      const seen = await (
        await request(`${emulatorUrl}/_emulator/videos/${video.videoId}`)
      ).body.json();
      expect(seen).toMatchObject({ completed: true, size: file.size, sha256: file.sha256 });
      expect((await request(`${relay.url}/readyz`)).statusCode).toBe(200);
    } finally {
      expect(await relay.stop('SIGTERM')).toBe(0);
    }
  });
});

test('npm run emulator: the emulator alone, port from EMULATOR_PORT, key from EMULATOR_API_KEY', async () => {
  const { spawn } = await import('node:child_process');
  const { join } = await import('node:path');
  const port = await freePort();
  const child = spawn(process.execPath, [join(ROOT, 'dist/emulator/main.js')], {
    env: {
      PATH: process.env.PATH!,
      EMULATOR_PORT: String(port),
      EMULATOR_API_KEY: 'standalone-key',
      EMULATOR_HOST: '127.0.0.1',
    },
  });
  try {
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    const auth = (key: string) => ({ authorization: basicAuth(key) });
    const good = await request(`http://127.0.0.1:${port}/videos`, {
      headers: auth('standalone-key'),
    });
    expect(good.statusCode).toBe(200);
    await good.body.dump();
    const bad = await request(`http://127.0.0.1:${port}/videos`, { headers: auth('other') });
    expect(bad.statusCode).toBe(401);
    await bad.body.dump();
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
  }
});

test('HTTP_HEADERS_TIMEOUT_MS: a client that never finishes its headers is cut off', async () => {
  const { connect } = await import('node:net');
  const relay = await startRelayProcess({ HTTP_HEADERS_TIMEOUT_MS: '1000' });
  try {
    const socket = connect(Number(new URL(relay.url).port), '127.0.0.1');
    socket.write('POST /v1/videos HTTP/1.1\r\nHost: x\r\n'); // and never the blank line
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    const started = Date.now();
    await new Promise((resolve) => socket.once('close', resolve));
    expect(Date.now() - started).toBeLessThan(4000);
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
  } finally {
    await relay.stop();
  }
});

test('a port in use: exit 1 saying to set PORT, no stack trace', async () => {
  const taken = createServer().listen(0, '127.0.0.1');
  await once(taken, 'listening');
  try {
    const { port } = taken.address() as AddressInfo;
    const { code, stderr } = await runToExit({ PORT: String(port), HOST: '127.0.0.1' });
    expect(code).toBe(1);
    expect(stderr).toMatch(new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use`));
    expect(stderr).toMatch(/set PORT to a free port/);
    expect(stderr).not.toMatch(/\n\s+at /);
  } finally {
    taken.close();
  }
});

test('on every interface, the start-up line gives an address a person can open, and where the budget came from', async () => {
  const relay = await startRelayProcess({ HOST: '0.0.0.0', UPLOAD_MEMORY_BUDGET: '256MiB' });
  try {
    const line = JSON.parse(
      relay
        .output()
        .split('\n')
        .find((l) => l.includes('relay listening'))!,
    ) as { msg: string };
    expect(relay.url).toMatch(/^http:\/\/localhost:\d+$/);
    expect(line.msg).toMatch(
      /^relay listening on http:\/\/localhost:\d+ \(every interface: http:\/\/0\.0\.0\.0:\d+\)/,
    );
    expect(line.msg).toContain('(as UPLOAD_MEMORY_BUDGET sets)');
    expect(line.msg).not.toContain('UPLOAD_MEMORY_BUDGET: UPLOAD_MEMORY_BUDGET');
    // The address works.
    expect((await request(`${relay.url}/healthz`)).statusCode).toBe(200);
  } finally {
    await relay.stop();
  }
});

test('without UPLOAD_MEMORY_BUDGET the start-up line says which share of which memory it took', async () => {
  const relay = await startRelayProcess({});
  try {
    const listening = relay
      .output()
      .split('\n')
      .find((l) => l.includes('relay listening'))!;
    const line = JSON.parse(listening) as { memoryBudgetBytes: number; memoryBudgetFrom: string };
    expect(line.memoryBudgetFrom).toMatch(
      /^(50 % of the cgroup v[12] limit|25 % of the machine's memory) \(\d+ MiB\)$/,
    );
    expect(line.memoryBudgetBytes).toBeGreaterThanOrEqual(16 * MiB);
    expect((line as unknown as { msg: string }).msg).toContain(
      `(UPLOAD_MEMORY_BUDGET unset: ${line.memoryBudgetFrom})`,
    );
  } finally {
    await relay.stop();
  }
});

describe('secrets from files (*_FILE, as Docker and Kubernetes mount them)', () => {
  const TOKENS = ['backend-one-token-0123456789', 'backend-two-token-0123456789'];
  const METRICS = 'metrics-token-from-a-file-42';
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'relay-secrets-'));
    writeFileSync(join(dir, 'APIVIDEO_API_KEY'), `${TEST_API_KEY}\n`);
    writeFileSync(join(dir, 'RELAY_API_TOKENS'), `${TOKENS.join('\n')}\n`);
    writeFileSync(join(dir, 'METRICS_TOKEN'), `${METRICS}\n`);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('production with the key, the client tokens and the metrics token from files: uploads reach the emulator with the key, tokens are checked, nothing is logged', async () => {
    const emulator = await startTestEmulator();
    const relay = await startRelayProcess({
      NODE_ENV: 'production',
      APIVIDEO_BASE_URL: emulator.url,
      APIVIDEO_API_KEY_FILE: join(dir, 'APIVIDEO_API_KEY'),
      RELAY_API_TOKENS_FILE: join(dir, 'RELAY_API_TOKENS'),
      METRICS_TOKEN_FILE: join(dir, 'METRICS_TOKEN'),
    });
    try {
      // The key came from the file: the emulator, which knows only TEST_API_KEY, took the upload.
      const refused = await uploadRaw(relay.url, 1024);
      expect(refused.status).toBe(401);
      const upload = await uploadRaw(relay.url, 6 * MiB + 1, {
        headers: { authorization: `Bearer ${TOKENS[1]}` },
      });
      expect(upload.status).toBe(201);
      const videoId = upload.body.videoId as string;
      expect(inspectVideo(emulator, videoId)).toMatchObject({
        completed: true,
        sha256: upload.sha256,
      });
      const metrics = (token?: string) =>
        request(`${relay.url}/metrics`, {
          headers: token ? { authorization: `Bearer ${token}` } : {},
        }).then(async (r) => (await r.body.dump(), r.statusCode));
      expect(await metrics()).toBe(401);
      expect(await metrics(METRICS)).toBe(200);
      for (const secret of [TEST_API_KEY, ...TOKENS, METRICS])
        expect(relay.output()).not.toContain(secret);
    } finally {
      expect(await relay.stop('SIGTERM')).toBe(0);
      await emulator.close();
    }
  });

  test('an unreadable file, or a secret set twice: exit 1 naming each setting, never a value', async () => {
    const { code, stdout, stderr } = await runToExit({
      NODE_ENV: 'production',
      APIVIDEO_API_KEY_FILE: join(dir, 'no-such-file'),
      RELAY_API_TOKENS: TOKENS[0]!,
      RELAY_API_TOKENS_FILE: join(dir, 'RELAY_API_TOKENS'),
    });
    expect(code).toBe(1);
    expect(stderr).toMatch(/^Invalid configuration:\n/);
    expect(stderr).toContain(
      `  - APIVIDEO_API_KEY_FILE: cannot read "${join(dir, 'no-such-file')}" (ENOENT)`,
    );
    expect(stderr).toContain(
      '  - RELAY_API_TOKENS and RELAY_API_TOKENS_FILE are both set: set one of them',
    );
    expect(stderr + stdout).not.toContain(TOKENS[0]);
    expect(stderr + stdout).not.toContain(TOKENS[1]);
    expect(stderr).not.toMatch(/\n\s+at /);
  });
});
