/**
 * The gauges behind the alerts on readiness: relay_ready says what /readyz says, and its parts
 * (api.video's key check, the session store) say why. Real key checks against the emulator, a real
 * Redis session store.
 */
import { Writable } from 'node:stream';
import type { Express } from 'express';
import request from 'supertest';
import { ApiVideoClient } from '../../src/apivideo/client';
import { KeyCheck } from '../../src/apivideo/key-check';
import { loadConfig } from '../../src/kernel/config';
import { RelayError } from '../../src/kernel/errors';
import { createLogger } from '../../src/kernel/logger';
import { createRelay } from '../../src/relay';
import { TEST_API_KEY } from '../helpers/emulator';
import { useEmulator } from '../helpers/fixture';
import { testPrefix } from '../helpers/resumable';
import { tcpProxy } from '../helpers/tcp-proxy';
import { eventually } from '../helpers/wait';

const fixture = useEmulator();

async function build(apiKey: string, env: Record<string, string> = {}) {
  const logger = createLogger({
    level: 'fatal',
    destination: new Writable({ write: (_c, _e, done) => done() }),
  });
  const client = new ApiVideoClient({ apiKey, baseUrl: fixture.emulator.url, maxAttempts: 1 });
  const keyCheck = new KeyCheck(client, logger, 60_000);
  const config = loadConfig({
    APIVIDEO_API_KEY: apiKey,
    APIVIDEO_BASE_URL: fixture.emulator.url,
    ...env,
  });
  const relay = createRelay({ config, logger, apivideo: client, readiness: keyCheck });
  relay.start();
  await keyCheck.start();
  return {
    app: relay.app,
    lifecycle: relay.lifecycle,
    close: async () => {
      keyCheck.stop();
      await relay.close();
      await client.close();
    },
  };
}

/** /readyz's status and the three gauges, from one scrape. */
async function health(app: Express) {
  const readyz = (await request(app).get('/readyz')).status;
  const text = (await request(app).get('/metrics')).text;
  const gauge = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
  return {
    readyz,
    ready: gauge('relay_ready'),
    apivideo: gauge('relay_apivideo_key_accepted'),
    sessionStore: gauge('relay_session_store_up'),
  };
}

test('a good key: 1 everywhere; draining turns relay_ready to 0 with /readyz, the key still accepted', async () => {
  const relay = await build(TEST_API_KEY);
  try {
    expect(await health(relay.app)).toEqual({
      readyz: 200,
      ready: 1,
      apivideo: 1,
      sessionStore: 1,
    });
    await relay.lifecycle.drain(0, () => new RelayError('shutting_down', 'test'));
    expect(await health(relay.app)).toEqual({
      readyz: 503,
      ready: 0,
      apivideo: 1,
      sessionStore: 1,
    });
  } finally {
    await relay.close();
  }
});

test('a rejected key: relay_ready and relay_apivideo_key_accepted are 0, as /readyz is 503', async () => {
  const relay = await build('revoked-key-0451');
  try {
    expect(await health(relay.app)).toEqual({
      readyz: 503,
      ready: 0,
      apivideo: 0,
      sessionStore: 1,
    });
  } finally {
    await relay.close();
  }
});

test('the Redis session store goes away: relay_session_store_up and relay_ready turn 0', async () => {
  const proxy = await tcpProxy(6379, { scheme: 'redis' });
  const relay = await build(TEST_API_KEY, {
    REDIS_URL: proxy.url,
    REDIS_KEY_PREFIX: testPrefix(),
  });
  try {
    await eventually(async () => (await health(relay.app)).readyz === 200);
    expect(await health(relay.app)).toEqual({
      readyz: 200,
      ready: 1,
      apivideo: 1,
      sessionStore: 1,
    });
    proxy.cut();
    expect(await health(relay.app)).toEqual({
      readyz: 503,
      ready: 0,
      apivideo: 1,
      sessionStore: 0,
    });
  } finally {
    await relay.close();
    await proxy.close();
  }
});
