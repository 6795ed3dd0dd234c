/**
 * One lifecycle for every upload that outlives a request (tus, chunked `/upload?token=`): it
 * begins once and ends exactly once; it expires UPLOAD_SESSION_TTL after its last byte, never
 * while it moves, and takes nothing after `Upload-Expires`; the sweep ends abandoned uploads of
 * every route (container deleted after asking api.video, `upload.expired`) and cannot be stalled
 * by leftovers in its index. A HEAD answers the offset of the request it takes over, never a
 * stale one, on this instance or another.
 */
import { PassThrough } from 'node:stream';
import request from 'supertest';
import { Upload } from 'tus-js-client';
import type { UploadOutcome } from '../../src/engine/outcome';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { inspectVideo } from '../helpers/emulator';
import { useEmulator } from '../helpers/fixture';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import {
  TUS,
  auth,
  createUpload,
  headOffset,
  patch,
  relayWithRedis,
  testPrefix,
  waitForRedis,
} from '../helpers/resumable';
import { mintUploadToken, postToUpload } from '../helpers/upload-tokens';
import { eventually } from '../helpers/wait';

const TOKEN = 'lifecycle-token-0123456789';
const fixture = useEmulator();
const relays: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const r of relays.splice(0)) await r.close();
});

async function relayWith(env: Record<string, string>, outcomes: UploadOutcome[] = []) {
  const relay = await startTestRelay(fixture.emulator, {
    env: { RELAY_API_TOKENS: TOKEN, LOG_LEVEL: 'info', ...env },
    outcomeSinks: [{ record: async (o) => void outcomes.push(o) }],
  });
  relays.push(relay);
  if (env.REDIS_URL) await waitForRedis(relay);
  return relay;
}

const metric = async (relay: TestRelay, line: RegExp) =>
  Number(line.exec((await request(relay.url).get('/metrics')).text)?.[1] ?? 0);

describe('an abandoned chunked /upload?token= upload', () => {
  test.each([
    ['left after its first chunk', false],
    ['whose token is revoked', true],
  ])(
    '%s: swept once its TTL passed, container deleted, upload.expired, metrics balanced',
    async (_name, revoke) => {
      const outcomes: UploadOutcome[] = [];
      const relay = await relayWith({ UPLOAD_SESSION_TTL: '1s' }, outcomes);
      const minted = await mintUploadToken(relay.url, TOKEN);
      const first = await postToUpload(relay.url, minted.token, randomBytesOf(5 * MiB), {
        range: 'part 1/2',
      });
      expect(first.status).toBe(201);
      const videoId = first.body.videoId as string;
      if (revoke)
        expect(
          (await request(relay.url).delete(`/v1/upload-tokens/${minted.id}`).set(auth(TOKEN)))
            .status,
        ).toBe(204);
      await eventually(async () => (await relay.sweepExpired()) === 1, 5000);
      expect(inspectVideo(fixture.emulator, videoId).deleted).toBe(true);
      expect(outcomes).toEqual([
        expect.objectContaining({
          kind: 'expired',
          code: 'upload_expired',
          route: 'upload-token',
          videoId,
          containerDeleted: true,
          uploadTokenId: minted.id,
          bytesAcknowledged: 5 * MiB,
        }),
      ]);
      const started = await metric(
        relay,
        /relay_uploads_started_total\{route="upload-token"\} (\d+)/,
      );
      const ended = await metric(
        relay,
        /relay_uploads_failed_total\{route="upload-token",code="upload_expired"\} (\d+)/,
      );
      expect([started, ended]).toEqual([1, 1]);
    },
  );
});

test('a sweep index with leftover ids (records gone) still sweeps, and drops the leftovers', async () => {
  const outcomes: UploadOutcome[] = [];
  const prefix = testPrefix();
  const { relay, redis, close } = await relayWithRedis(
    fixture.emulator,
    { RELAY_API_TOKENS: TOKEN, UPLOAD_SESSION_TTL: '1s' },
    { prefix, outcomeSinks: [{ record: async (o) => void outcomes.push(o) }] },
  );
  relays.push({ close });
  const index = `${prefix}uploads:expiry`;
  // 250 ids whose records Redis evicted (or a sweep down for a day left behind), all older
  // than any real upload.
  const leftovers = Array.from({ length: 250 }, (_, i) => `gone${String(i).padStart(18, '0')}`);
  await redis.zadd(index, ...leftovers.flatMap((id, i) => [i, id]));
  const path = await createUpload(relay.url, 12 * MiB, TOKEN);
  expect((await patch(relay.url, path, 0, randomBytesOf(6 * MiB), TOKEN)).status).toBe(204);
  await eventually(async () => (await relay.sweepExpired()) === 1, 5000);
  expect(outcomes).toEqual([expect.objectContaining({ kind: 'expired', containerDeleted: true })]);
  expect(await redis.zcard(index)).toBe(0);
});

test('tus parallelUploads: refused at creation (tus_concatenation_unsupported), nothing created upstream', async () => {
  const relay = await relayWith({});
  fixture.emulator.requestLog.length = 0;
  const error = await new Promise<Error>((resolve, reject) => {
    new Upload(randomBytesOf(12 * MiB), {
      endpoint: `${relay.url}/v1/uploads`,
      headers: auth(TOKEN),
      parallelUploads: 3,
      retryDelays: [],
      onError: resolve,
      onSuccess: () => reject(new Error('uploaded')),
    }).start();
  });
  expect(error.message).toMatch(/response code: 400/);
  expect(error.message).toMatch(/tus_concatenation_unsupported/);
  expect(fixture.emulator.requestLog.filter((r) => r.url.startsWith('/videos'))).toEqual([]);
  expect(
    (await request(relay.url).options('/v1/uploads').set(TUS)).headers['tus-extension'],
  ).not.toMatch(/concatenation/);
});

describe('expiry', () => {
  test('counts from the last byte: an upload that moves past its TTL is never expired', async () => {
    const outcomes: UploadOutcome[] = [];
    const relay = await relayWith({ UPLOAD_SESSION_TTL: '1s' }, outcomes);
    const data = randomBytesOf(64 * 1024);
    const path = await createUpload(relay.url, data.length, TOKEN);
    const created = Date.parse(
      (await request(relay.url).head(path).set(auth(TOKEN)).set(TUS)).headers['upload-expires']!,
    );
    const body = new PassThrough();
    const answer = patch(relay.url, path, 0, body, TOKEN);
    // The client trickles for longer than the TTL while the sweep runs again and again.
    for (let at = 0; at < data.length; at += 4096) {
      body.write(data.subarray(at, at + 4096));
      await relay.sweepExpired();
      if (at === 0) await eventually(() => Date.now() > created + 200, 5000);
      if (at === 32 * 1024) await eventually(() => Date.now() > created + 1500, 5000);
    }
    body.end();
    expect((await answer).status).toBe(204);
    expect(outcomes).toEqual([expect.objectContaining({ kind: 'completed' })]);
  });

  test('enforced exactly: nothing is taken after Upload-Expires, even before any sweep (410)', async () => {
    const outcomes: UploadOutcome[] = [];
    const relay = await relayWith({ UPLOAD_SESSION_TTL: '1s' }, outcomes);
    const data = randomBytesOf(12 * MiB);
    const path = await createUpload(relay.url, data.length, TOKEN);
    const first = await patch(relay.url, path, 0, data.subarray(0, 6 * MiB), TOKEN);
    expect(first.status).toBe(204);
    const expires = Date.parse(first.headers['upload-expires'] as string);
    await eventually(() => Date.now() > expires, 5000);
    const late = await patch(relay.url, path, 6 * MiB, data.subarray(6 * MiB), TOKEN);
    expect([late.status, JSON.parse(late.body).code]).toEqual([410, 'upload_expired']);
    expect(outcomes).toEqual([
      expect.objectContaining({ kind: 'expired', code: 'upload_expired', containerDeleted: true }),
    ]);
    expect((await headOffset(relay.url, path, TOKEN)).status).toBe(404);
  });
});

describe('a HEAD during a takeover', () => {
  test('waits for the request it takes over and answers its true offset, never a stale one', async () => {
    const { emulator } = fixture;
    const relay = await relayWith({ UPLOAD_PART_SIZE: '5MiB' });
    const data = randomBytesOf(20 * MiB);
    const path = await createUpload(relay.url, data.length, TOKEN);
    emulator.gate.hold();
    const body = new PassThrough();
    const writing = patch(relay.url, path, 0, body, TOKEN);
    body.write(data.subarray(0, 13 * MiB));
    await emulator.gate.waitForHeld(2);
    // Parts 1 and 2 on the wire: the durable offset is still 0 while 13 MiB are with the relay.
    const head = request(relay.url)
      .head(path)
      .set(auth(TOKEN))
      .set(TUS)
      .then((r) => r);
    emulator.gate.open();
    const answered = await head;
    const taken = await writing;
    expect(taken.status).toBe(423);
    expect(answered.status).toBe(200);
    // Parts 1 and 2 acknowledged, and the bytes after them kept: exactly what was sent.
    expect(answered.headers['upload-offset']).toBe(String(13 * MiB));
    expect(taken.offset).toBe(String(13 * MiB));
    const rest = await patch(relay.url, path, 13 * MiB, data.subarray(13 * MiB), TOKEN);
    expect(rest.status).toBe(204);
    expect(inspectVideo(emulator, rest.headers['upload-video-id'] as string)).toMatchObject({
      completed: true,
      sha256: sha256(data),
    });
  });

  test('on another instance: the holder is asked to let go through Redis, and the HEAD answers promptly', async () => {
    const prefix = testPrefix();
    const a = await relayWithRedis(fixture.emulator, { RELAY_API_TOKENS: TOKEN }, { prefix });
    relays.push(a);
    const b = await relayWithRedis(fixture.emulator, { RELAY_API_TOKENS: TOKEN }, { prefix });
    relays.push(b);
    const data = randomBytesOf(8 * MiB);
    const path = await createUpload(a.relay.url, data.length, TOKEN);
    // A phone whose connection died silently: the relay on A still waits for its bytes.
    const body = new PassThrough();
    const stalled = patch(a.relay.url, path, 0, body, TOKEN);
    body.write(data.subarray(0, 6 * MiB));
    await eventually(
      async () => (await a.redis.exists(`${prefix}lock:${path.split('/').pop()}`)) === 1,
    );
    await eventually(
      () => fixture.emulator.stats.partLog.some((p) => p.contentRange === 'part 1/*'),
      5000,
    );
    const head = await request(b.relay.url).head(path).set(auth(TOKEN)).set(TUS);
    expect([head.status, head.headers['upload-offset']]).toEqual([200, String(6 * MiB)]);
    expect((await stalled).status).toBe(423);
    const rest = await patch(b.relay.url, path, 6 * MiB, data.subarray(6 * MiB), TOKEN);
    expect(rest.status).toBe(204);
    expect(inspectVideo(fixture.emulator, rest.headers['upload-video-id'] as string)).toMatchObject(
      {
        completed: true,
        sha256: sha256(data),
      },
    );
  });
});
