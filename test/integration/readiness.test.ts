/** /healthz always; /readyz only while api.video accepts the key, checked in the background, not per probe. */
import { Writable } from 'node:stream';
import request from 'supertest';
import { ApiVideoClient } from '../../src/apivideo/client';
import { KeyCheck } from '../../src/apivideo/key-check';
import { createApp } from '../../src/app';
import { loadConfig } from '../../src/config';
import type { RunningEmulator } from '../../src/emulator/app';
import { createLogger } from '../../src/logger';
import { TEST_API_KEY, startTestEmulator } from '../helpers/emulator';

let emulator: RunningEmulator;
beforeAll(async () => (emulator = await startTestEmulator()));
afterAll(() => emulator.close());

async function build(apiKey: string) {
  let logs = '';
  const logger = createLogger({
    level: 'info',
    secrets: [apiKey],
    destination: new Writable({ write: (c: Buffer, _e, done) => ((logs += c.toString()), done()) }),
  });
  const client = new ApiVideoClient({ apiKey, baseUrl: emulator.url, maxAttempts: 1 });
  const keyCheck = new KeyCheck(client, logger, 60_000);
  const config = loadConfig({ APIVIDEO_API_KEY: apiKey, APIVIDEO_BASE_URL: emulator.url });
  const app = createApp({ config, logger, apivideo: client, readiness: keyCheck });
  await keyCheck.start();
  return { app, keyCheck, client, logs: () => logs };
}

test('a good key: ready; probes cost api.video nothing', async () => {
  const { app, keyCheck, client } = await build(TEST_API_KEY);
  emulator.stats.reset();
  for (let i = 0; i < 20; i++) {
    const res = await request(app).get('/readyz');
    expect(res.status).toBe(200);
  }
  expect(emulator.stats.requests).toBe(0);
  expect((await request(app).get('/healthz')).status).toBe(200);
  keyCheck.stop();
  await client.close();
});

test('a rejected key: not ready (503), and an error line for the operator without the key', async () => {
  const { app, keyCheck, client, logs } = await build('revoked-key-0451');
  const res = await request(app).get('/readyz');
  expect(res.status).toBe(503);
  expect((await request(app).get('/healthz')).status).toBe(200);
  expect(logs()).toContain('"event":"upstream_key_rejected"');
  expect(logs()).not.toContain('revoked-key-0451');
  keyCheck.stop();
  await client.close();
});

test('api.video unreachable: not ready', async () => {
  const logger = createLogger({ level: 'silent' });
  const client = new ApiVideoClient({
    apiKey: TEST_API_KEY,
    baseUrl: 'http://127.0.0.1:9',
    maxAttempts: 1,
  });
  const keyCheck = new KeyCheck(client, logger, 60_000);
  await keyCheck.start();
  expect(keyCheck.isReady()).toBe(false);
  keyCheck.stop();
  await client.close();
});
