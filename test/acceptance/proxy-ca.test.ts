/**
 * Behind a corporate firewall: api.video (the emulator, over HTTPS with a private CA) is reachable
 * only through a CONNECT proxy that wants credentials. The relay runs as its own process.
 */
import { Server as ProxyServer } from 'proxy-chain';
import { request } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import { startEmulator } from '../../src/emulator/app';
import { makeTestPki, type TestPki } from '../helpers/certs';
import { MiB } from '../helpers/data';
import { TEST_API_KEY, inspectVideo } from '../helpers/emulator';
import { requirePrograms } from '../helpers/prerequisites';
import { startRelayProcess, type RelayProcess } from '../helpers/process';
import { uploadRaw } from '../helpers/upload';

const PROXY_PASSWORD = 'pr0xy-s3cret-pw';
let pki: TestPki;
let emulator: RunningEmulator;
let proxy: ProxyServer;
const connects: Array<{ method: string; hostname: string; port: number; username: string }> = [];
const running: RelayProcess[] = [];

beforeAll(async () => {
  requirePrograms('openssl');
  pki = makeTestPki();
  emulator = await startEmulator({
    apiKey: TEST_API_KEY,
    host: '127.0.0.1',
    tls: { key: pki.key, cert: pki.cert },
  });
  proxy = new ProxyServer({
    port: 0,
    host: '127.0.0.1',
    prepareRequestFunction: ({ request: req, hostname, port, username, password }) => {
      connects.push({ method: req.method ?? '', hostname, port, username });
      return { requestAuthentication: username !== 'relay' || password !== PROXY_PASSWORD };
    },
  });
  await proxy.listen();
});
afterAll(async () => {
  await Promise.all(running.map((r) => r.stop('SIGKILL')));
  await proxy?.close(true);
  await emulator?.close();
  pki?.remove();
});

async function relay(env: Record<string, string>) {
  const port = new URL(emulator.url).port;
  const started = await startRelayProcess({
    APIVIDEO_API_KEY: TEST_API_KEY,
    APIVIDEO_BASE_URL: `https://localhost:${port}`,
    HTTPS_PROXY: `http://relay:${PROXY_PASSWORD}@127.0.0.1:${proxy.port}`,
    UPSTREAM_MAX_ATTEMPTS: '2',
    UPLOAD_PART_SIZE: '5MiB', // several parts through one tunnel
    LOG_LEVEL: 'debug',
    ...env,
  });
  running.push(started);
  return started;
}

test('through the CONNECT proxy, trusting the CA with APIVIDEO_CA_FILE: byte-exact, and the proxy saw it', async () => {
  const r = await relay({ APIVIDEO_CA_FILE: pki.caFile });
  connects.length = 0;
  const answer = await uploadRaw(r.url, 12 * MiB);
  expect(answer.status).toBe(201);
  expect(inspectVideo(emulator, answer.body.videoId as string)).toMatchObject({
    completed: true,
    sha256: answer.sha256,
  });
  const port = Number(new URL(emulator.url).port);
  expect(connects).toContainEqual({
    method: 'CONNECT',
    hostname: 'localhost',
    port,
    username: 'relay',
  });
  expect(r.output()).not.toContain(PROXY_PASSWORD);
  expect(r.output()).not.toContain(TEST_API_KEY);
});

test('NODE_EXTRA_CA_CERTS works as well', async () => {
  const r = await relay({ NODE_EXTRA_CA_CERTS: pki.caFile });
  const answer = await uploadRaw(r.url, 1000);
  expect(answer.status).toBe(201);
  expect(inspectVideo(emulator, answer.body.videoId as string)).toMatchObject({
    completed: true,
    sha256: answer.sha256,
  });
});

test('without the CA: 502 upstream_tls_error, and the relay keeps running', async () => {
  const r = await relay({});
  const answer = await uploadRaw(r.url, 1000);
  expect(answer.status).toBe(502);
  expect(answer.body).toMatchObject({ code: 'upstream_tls_error' });
  expect((await request(`${r.url}/healthz`)).statusCode).toBe(200);
  expect(r.child.exitCode).toBeNull();
});
