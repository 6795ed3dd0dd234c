/** /healthz always; /readyz only while api.video accepts the key, checked in the background, not per probe. */
import { Writable } from 'node:stream';
import request from 'supertest';
import { ApiVideoClient } from '../../src/apivideo/client';
import { KeyCheck } from '../../src/apivideo/key-check';
import { createRelay } from '../../src/relay';
import { loadConfig } from '../../src/kernel/config';
import { createLogger } from '../../src/kernel/logger';
import { TEST_API_KEY, startTestEmulator } from '../helpers/emulator';
import { useEmulator } from '../helpers/fixture';

const fixture = useEmulator();

async function build(apiKey: string, baseUrl = fixture.emulator.url) {
  let logs = '';
  const logger = createLogger({
    level: 'info',
    secrets: [apiKey],
    destination: new Writable({ write: (c: Buffer, _e, done) => ((logs += c.toString()), done()) }),
  });
  const client = new ApiVideoClient({ apiKey, baseUrl, maxAttempts: 1 });
  const keyCheck = new KeyCheck(client, logger, 60_000);
  const config = loadConfig({ APIVIDEO_API_KEY: apiKey, APIVIDEO_BASE_URL: baseUrl });
  const { app } = createRelay({ config, logger, apivideo: client, readiness: keyCheck });
  await keyCheck.start();
  return { app, keyCheck, client, logs: () => logs };
}

test('a good key: ready; probes cost api.video nothing', async () => {
  const { app, keyCheck, client } = await build(TEST_API_KEY);
  try {
    fixture.emulator.stats.reset();
    for (let i = 0; i < 20; i++) {
      const res = await request(app).get('/readyz');
      expect(res.status).toBe(200);
    }
    expect(fixture.emulator.stats.requests).toBe(0);
    expect((await request(app).get('/healthz')).status).toBe(200);
  } finally {
    keyCheck.stop();
    await client.close();
  }
});

test('a rejected key: not ready (503), and an error line for the operator without the key', async () => {
  const { app, keyCheck, client, logs } = await build('revoked-key-0451');
  try {
    const res = await request(app).get('/readyz');
    expect(res.status).toBe(503);
    expect((await request(app).get('/healthz')).status).toBe(200);
    expect(logs()).toContain('"event":"upstream_key_rejected"');
    expect(logs()).not.toContain('revoked-key-0451');
  } finally {
    keyCheck.stop();
    await client.close();
  }
});

test('api.video becomes unreachable: not ready, and a warning that says so', async () => {
  const reachable = await startTestEmulator();
  const { app, keyCheck, client, logs } = await build(TEST_API_KEY, reachable.url);
  try {
    expect((await request(app).get('/readyz')).status).toBe(200);
    await reachable.close();
    await keyCheck.check();
    expect((await request(app).get('/readyz')).status).toBe(503);
    expect((await request(app).get('/healthz')).status).toBe(200);
    expect(logs()).toContain('"event":"upstream_check_failed"');
  } finally {
    keyCheck.stop();
    await client.close();
    await reachable.close();
  }
});
