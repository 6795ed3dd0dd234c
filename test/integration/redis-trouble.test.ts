/**
 * Redis in trouble, with a redis-server of the test's own: killed while an upload's last
 * checkpoint is written (the upload completes once Redis is back, nothing deleted), and hung
 * (SIGSTOP: every route that needs it answers 503 within seconds, /readyz too, and all recover
 * with SIGCONT, without a restart).
 */
import request from 'supertest';
import { PassThrough } from 'node:stream';
import type { UploadOutcome } from '../../src/engine/outcome';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { inspectVideo } from '../helpers/emulator';
import { useEmulator } from '../helpers/fixture';
import { startOwnRedis, type OwnRedis } from '../helpers/redis-server';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { TUS, auth, createUpload, patch, testPrefix, waitForRedis } from '../helpers/resumable';
import { uploadRaw } from '../helpers/upload';
import { mintUploadToken, postToUpload } from '../helpers/upload-tokens';
import { eventually } from '../helpers/wait';

const TOKEN = 'redis-trouble-token-01234';
const fixture = useEmulator();

async function relayOn(
  redis: OwnRedis,
  outcomes: UploadOutcome[],
  env: Record<string, string> = {},
) {
  const relay = await startTestRelay(fixture.emulator, {
    env: {
      RELAY_API_TOKENS: TOKEN,
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: testPrefix(),
      LOG_LEVEL: 'info',
      ...env,
    },
    outcomeSinks: [{ record: async (o) => void outcomes.push(o) }],
    // The Redis probe behind /readyz runs, as in main.ts.
    start: true,
  });
  await waitForRedis(relay);
  return relay;
}

test('Redis killed while the last checkpoint is written: the upload completes once Redis is back, nothing deleted', async () => {
  const { emulator } = fixture;
  const redis = await startOwnRedis({ persistent: true });
  const outcomes: UploadOutcome[] = [];
  let relay: TestRelay | undefined;
  try {
    relay = await relayOn(redis, outcomes);
    const data = randomBytesOf(6 * MiB);
    const path = await createUpload(relay.url, data.length, TOKEN);
    emulator.gate.hold();
    const answer = patch(relay.url, path, 0, data, TOKEN);
    await emulator.gate.waitForHeld(1);
    emulator.gate.release('part 1/*');
    // The last part is on the wire (its ledger entry saved): Redis dies before its answer comes.
    await emulator.gate.waitForHeld(1);
    expect(emulator.gate.held).toEqual(['part 2/2']);
    await redis.kill();
    emulator.gate.open();
    const cut = await answer;
    expect([cut.status, JSON.parse(cut.body).code]).toEqual([503, 'session_store_unavailable']);
    // The offset last saved: the last part's bytes are not counted until it is settled.
    expect(cut.offset).toBe(String(5 * MiB));
    expect(outcomes).toEqual([]);

    await redis.restart();
    await eventually(async () => (await request(relay!.url).get('/readyz')).status === 200, 10_000);
    const head = await request(relay.url).head(path).set(auth(TOKEN)).set(TUS);
    expect([head.status, head.headers['upload-offset']]).toEqual([200, String(data.length)]);
    const videoId = head.headers['upload-video-id'] as string;
    expect(inspectVideo(emulator, videoId)).toMatchObject({
      completed: true,
      deleted: false,
      sha256: sha256(data),
    });
    expect(outcomes).toEqual([expect.objectContaining({ kind: 'completed', videoId })]);
    expect(emulator.requestLog.some((r) => r.method === 'DELETE')).toBe(false);
  } finally {
    emulator.gate.open();
    await relay?.close();
    await redis.stop();
  }
});

test('Redis hung (SIGSTOP): 503 session_store_unavailable within 5 s on every route that needs it, /readyz 503; all recover with SIGCONT', async () => {
  const redis = await startOwnRedis();
  const outcomes: UploadOutcome[] = [];
  let relay: TestRelay | undefined;
  const held = new PassThrough();
  try {
    relay = await relayOn(redis, outcomes, { REDIS_COMMAND_TIMEOUT_MS: '1000' });
    const { url } = relay;
    const data = randomBytesOf(7 * MiB);
    const path = await createUpload(url, data.length, TOKEN);
    expect((await patch(url, path, 0, data.subarray(0, 3 * MiB), TOKEN)).status).toBe(204);
    const { token } = await mintUploadToken(url, TOKEN);

    redis.pause();
    const refusals = {
      head: () => request(url).head(path).set(auth(TOKEN)).set(TUS),
      creation: () =>
        request(url).post('/v1/uploads').set(auth(TOKEN)).set(TUS).set('Upload-Length', '10'),
      patch: () =>
        request(url)
          .patch(path)
          .set(auth(TOKEN))
          .set(TUS)
          .set('Upload-Offset', String(3 * MiB))
          .set('Content-Type', 'application/offset+octet-stream')
          .send(data.subarray(3 * MiB, 4 * MiB)),
      mint: () => request(url).post('/v1/upload-tokens').set(auth(TOKEN)).send({}),
      'upload with a token': () => uploadRaw(url, 1000, { headers: auth(token) }),
      '/upload?token=': () => postToUpload(url, token, randomBytesOf(1000)),
    };
    for (const [route, send] of Object.entries(refusals)) {
      const started = Date.now();
      const answer = await send();
      const elapsed = Date.now() - started;
      expect({ route, status: answer.status }).toEqual({ route, status: 503 });
      if (route !== 'head')
        expect({ route, code: (answer.body as { code?: string }).code }).toEqual({
          route,
          code: 'session_store_unavailable',
        });
      expect({ route, retryAfter: answer.headers['retry-after'] }).toEqual({
        route,
        retryAfter: '5',
      });
      expect({ route, fast: elapsed < 5000 }).toEqual({ route, fast: true });
    }
    await eventually(async () => (await request(url).get('/readyz')).status === 503, 5000);
    // Nothing reached api.video for the refused requests, nothing failed.
    expect(outcomes.filter((o) => o.kind !== 'completed')).toEqual([]);

    redis.resume();
    await eventually(async () => (await request(url).get('/readyz')).status === 200, 10_000);
    const head = await request(url).head(path).set(auth(TOKEN)).set(TUS);
    expect([head.status, head.headers['upload-offset']]).toEqual([200, String(3 * MiB)]);
    const rest = await patch(url, path, 3 * MiB, data.subarray(3 * MiB), TOKEN);
    expect(rest.status).toBe(204);
    expect(inspectVideo(fixture.emulator, rest.headers['upload-video-id'] as string)).toMatchObject(
      {
        completed: true,
        sha256: sha256(data),
      },
    );
    expect((await postToUpload(url, token, randomBytesOf(1000))).status).toBe(201);
  } finally {
    held.destroy();
    redis.resume();
    await relay?.close();
    await redis.stop();
  }
});
