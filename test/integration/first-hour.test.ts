/**
 * What a new user meets in the first hour, over real sockets: security headers that do not kill the
 * page over plain HTTP, request log lines at the right level without stack traces, the error
 * catalogue every problem's `type` links to, GET /v1/info, and the page's tus bundle from dist/.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import type { ApiVideoClient } from '../../src/apivideo/client';
import { createRelay } from '../../src/relay';
import { loadConfig } from '../../src/kernel/config';
import type { RunningEmulator } from '../../src/emulator/app';
import { createLogger } from '../../src/kernel/logger';
import { createHttpServer, listen } from '../../src/http/server';
import { startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { Writable } from 'node:stream';

const ROOT = join(__dirname, '../..');
const TOKEN = 'first-hour-token-0123456789';

let emulator: RunningEmulator;
let relay: TestRelay;
let proxied: TestRelay;
beforeAll(async () => {
  emulator = await startTestEmulator();
  relay = await startTestRelay(emulator, {
    env: { RELAY_API_TOKENS: TOKEN, LOG_LEVEL: 'info', UPSTREAM_MAX_ATTEMPTS: '2' },
  });
  proxied = await startTestRelay(emulator, { env: { TRUST_PROXY: 'loopback' } });
});
afterAll(async () => {
  await relay.close();
  await proxied.close();
  await emulator.close();
});

async function headersOf(url: string, headers: Record<string, string> = {}) {
  const answer = await request(url, { headers });
  await answer.body.dump();
  return answer.headers;
}

describe('security headers', () => {
  test('plain HTTP from another machine: no HSTS, no upgrade-insecure-requests', async () => {
    const headers = await headersOf(relay.url + '/', { host: '192.168.1.20:3000' });
    expect(headers['strict-transport-security']).toBeUndefined();
    const csp = String(headers['content-security-policy']);
    expect(csp).toContain("script-src 'self'"); // the rest of the policy is still there
    expect(csp).not.toContain('upgrade-insecure-requests');
  });

  test('over TLS (X-Forwarded-Proto from a trusted proxy): HSTS and upgrade-insecure-requests', async () => {
    const headers = await headersOf(proxied.url + '/', { 'x-forwarded-proto': 'https' });
    expect(headers['strict-transport-security']).toMatch(/max-age=\d+/);
    expect(String(headers['content-security-policy'])).toContain('upgrade-insecure-requests');
  });

  test('X-Forwarded-Proto from an untrusted client is ignored (no TRUST_PROXY)', async () => {
    const headers = await headersOf(relay.url + '/', { 'x-forwarded-proto': 'https' });
    expect(headers['strict-transport-security']).toBeUndefined();
    expect(String(headers['content-security-policy'])).not.toContain('upgrade-insecure-requests');
  });
});

describe('request log lines', () => {
  const linesFor = (target: TestRelay, requestId: string) =>
    target.logs().filter((l) => (l.req as { id?: string } | undefined)?.id === requestId);

  test('a 4xx is a warning with its code and no stack trace', async () => {
    const answer = await request(relay.url + '/v1/videos', {
      method: 'POST',
      headers: { 'x-request-id': 'log-test-401' },
    });
    expect(answer.statusCode).toBe(401);
    await answer.body.dump();
    const [line] = linesFor(relay, 'log-test-401');
    expect(line).toMatchObject({ level: 40, code: 'unauthorized', res: { statusCode: 401 } });
    expect(line!.msg).toBe('request refused: unauthorized');
    expect(line!.err).toBeUndefined();
    expect(JSON.stringify(line)).not.toContain('    at ');
  });

  test('api.video failing (502 upstream_failed) is a warning, without the stack pino-http would make up', async () => {
    emulator.faults.add({ target: 'create', status: 500, times: 2 });
    const answer = await request(relay.url + '/v1/videos?title=x', {
      method: 'POST',
      headers: {
        authorization: `Bearer ${TOKEN}`,
        'content-type': 'video/mp4',
        'x-request-id': 'log-test-502',
      },
      body: Buffer.alloc(1024, 1),
    });
    expect(answer.statusCode).toBe(502);
    expect(((await answer.body.json()) as { code: string }).code).toBe('upstream_failed');
    const lines = linesFor(relay, 'log-test-502');
    expect(lines.length).toBeGreaterThan(0);
    const requestLine = lines.find((l) => l.res)!;
    expect(requestLine).toMatchObject({ level: 40, code: 'upstream_failed' });
    expect(requestLine.err).toBeUndefined();
    for (const line of lines) expect(JSON.stringify(line)).not.toContain('    at ');
    expect(lines.every((l) => (l.level as number) < 50)).toBe(true);
  });

  test('an unexpected failure (500 internal_error) is an error, stack included', async () => {
    let written = '';
    const destination = new Writable({
      write(chunk: Buffer, _e, done) {
        written += chunk.toString();
        done();
      },
    });
    const config = loadConfig({ APIVIDEO_API_KEY: 'k'.repeat(16), LOG_LEVEL: 'info' });
    // A client that breaks the way a bug would: the route's await throws a TypeError.
    const broken = {
      getVideo: () => Promise.reject(new TypeError('cannot read properties of undefined')),
    } as unknown as ApiVideoClient;
    const { app } = createRelay({
      config,
      logger: createLogger({ level: 'info', destination }),
      apivideo: broken,
      readiness: { isReady: () => true },
    });
    const server = createHttpServer(app, config);
    try {
      const url = await listen(server, 0, '127.0.0.1');
      const answer = await request(url + '/v1/videos/vi4blUQJFrYWbaG44NChkH27', {
        headers: { 'x-request-id': 'log-test-500' },
      });
      expect(answer.statusCode).toBe(500);
      const problem = (await answer.body.json()) as { code: string };
      expect(problem.code).toBe('internal_error');
      expect(JSON.stringify(problem)).not.toContain('TypeError');
      const lines = written
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const requestLine = lines.find(
        (l) => l.res && (l.req as { id?: string }).id === 'log-test-500',
      )!;
      expect(requestLine).toMatchObject({ level: 50, msg: 'request errored' });
      const unexpected = lines.find((l) => l.msg === 'unexpected error')!;
      expect(unexpected.level).toBe(50);
      expect((unexpected.err as { stack: string }).stack).toContain('TypeError');
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('a success stays at info', async () => {
    const answer = await request(relay.url + '/openapi.json', {
      headers: { 'x-request-id': 'log-test-200' },
    });
    await answer.body.dump();
    expect(linesFor(relay, 'log-test-200')[0]).toMatchObject({
      level: 30,
      msg: 'request completed',
    });
  });
});

test("a problem's type resolves, on the relay itself, to its code's entry in the catalogue", async () => {
  const answer = await request(relay.url + '/no/such/route');
  const problem = (await answer.body.json()) as { type: string; code: string };
  expect(problem.code).toBe('route_not_found');
  const link = new URL(problem.type, relay.url + '/no/such/route');
  expect(link.origin).toBe(relay.url);
  expect(link.hash).toBe('#route_not_found');
  const page = await request(link);
  expect(page.statusCode).toBe(200);
  expect(page.headers['content-type']).toMatch(/^text\/html/);
  const html = await page.body.text();
  // Every code of the catalogue has its anchor, the linked one included.
  for (const code of ['route_not_found', 'file_too_large', 'internal_error'])
    expect(html).toContain(`<tr id="${code}">`);
  expect(html).toContain('The method and path are not part of the API.');
});

test('GET /v1/info says which upstream, without auth, and nothing secret', async () => {
  const answer = await request(relay.url + '/v1/info');
  expect(answer.statusCode).toBe(200);
  const text = await answer.body.text();
  expect(JSON.parse(text)).toEqual({ upstream: 'api.video' });
  expect(text).not.toContain(emulator.url);
});

test('GET /v1/info: "emulator" with the standalone emulator\'s key, as docker-compose runs it', async () => {
  const composed = await startTestRelay(emulator, { apiKey: 'emulator-key' });
  try {
    const answer = await request(composed.url + '/v1/info');
    expect(await answer.body.json()).toEqual({ upstream: 'emulator' });
  } finally {
    await composed.close();
  }
});

test("the page's tus bundle is the one copied into dist/ at build time, and not a production dependency", async () => {
  const answer = await request(relay.url + '/vendor/tus.min.js');
  expect(answer.statusCode).toBe(200);
  const served = Buffer.from(await answer.body.arrayBuffer());
  expect(served.equals(readFileSync(join(ROOT, 'dist/vendor/tus.min.js')))).toBe(true);
  expect(
    served.equals(readFileSync(join(ROOT, 'node_modules/tus-js-client/dist/tus.min.js'))),
  ).toBe(true);
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
    devDependencies: Record<string, string>;
    scripts: Record<string, string>;
  };
  expect(pkg.dependencies['tus-js-client']).toBeUndefined();
  expect(pkg.devDependencies['tus-js-client']).toBeDefined();
  expect(pkg.scripts.build).toContain('scripts/build-assets.mjs');
});
