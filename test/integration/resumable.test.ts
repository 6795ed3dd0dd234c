/**
 * tus 1.0 at /v1/uploads on the one upload engine, with sessions in the real Redis: tus-js-client
 * uploads the size table byte-exact, small chunks are never asked again, the offset never claims
 * what api.video has not acknowledged, and termination, expiry and ownership hold.
 */
import { Redis } from 'ioredis';
import request from 'supertest';
import type { RunningEmulator } from '../../src/emulator/app';
import { RedisLocker } from '../../src/stores/upload-lock';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { inspectVideo, startTestEmulator } from '../helpers/emulator';
import {
  TOKEN_A,
  TOKEN_B,
  TUS,
  auth,
  createUpload,
  headOffset,
  patch,
  relayWithRedis,
  testPrefix,
  type RedisRelay,
} from '../helpers/resumable';
import { tcpProxy } from '../helpers/tcp-proxy';
import { tusUpload } from '../helpers/tus';
import { eventually } from '../helpers/wait';

let emulator: RunningEmulator;
let main: RedisRelay;
const url = () => main.relay.url;

beforeAll(async () => {
  emulator = await startTestEmulator();
  main = await relayWithRedis(emulator);
});
afterAll(async () => {
  await main?.close();
  await emulator?.close();
});
afterEach(() => emulator.faults.clear());

const endpoint = () => `${url()}/v1/uploads`;
const P = 5 * MiB;

test.each([1, P - 1, P, P + 1, 2 * P, 3 * P + 7])(
  'tus-js-client, %i bytes, one request: byte-exact, parts 1..N',
  async (size) => {
    const data = randomBytesOf(size);
    const result = await tusUpload(endpoint(), data, { headers: auth(TOKEN_A) });
    expect(result.videoId).toMatch(/^vi/);
    const seen = inspectVideo(emulator, result.videoId!);
    expect(seen).toMatchObject({ completed: true, size, sha256: sha256(data) });
    const n = Math.ceil(size / P);
    expect(seen.parts.map((p) => p.number)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(seen.parts.at(-1)!.label).toBe(`part ${n}/${n}`);
    expect(seen.parts.slice(0, -1).every((p) => p.size === P)).toBe(true);
  },
);

test('deferred length (Upload-Defer-Length): still labelled N/N, never an empty part', async () => {
  const data = randomBytesOf(2 * P);
  const result = await tusUpload(endpoint(), data, {
    headers: auth(TOKEN_A),
    uploadLengthDeferred: true,
    chunkSize: 3 * MiB,
  });
  const seen = inspectVideo(emulator, result.videoId!);
  expect(seen).toMatchObject({ completed: true, sha256: sha256(data) });
  expect(seen.parts.map((p) => p.label)).toEqual(['part 1/*', 'part 2/2']);
});

test('1 MiB chunks over 20 MiB: every chunk accepted at once, nothing sent twice', async () => {
  const proxy = await tcpProxy(Number(new URL(url()).port));
  try {
    const data = randomBytesOf(20 * MiB);
    let retries = 0;
    const result = await tusUpload(`${proxy.url}/v1/uploads`, data, {
      headers: auth(TOKEN_A),
      chunkSize: MiB,
      onShouldRetry: () => (retries++, true),
    });
    expect(retries).toBe(0);
    expect(inspectVideo(emulator, result.videoId!)).toMatchObject({
      completed: true,
      sha256: sha256(data),
    });
    // 20 PATCH bodies plus headers: a single re-sent chunk would add a whole MiB.
    expect(proxy.sent()).toBeGreaterThanOrEqual(20 * MiB);
    expect(proxy.sent()).toBeLessThan(20 * MiB + 64 * 1024);
    expect(inspectVideo(emulator, result.videoId!).parts.every((p) => p.received === 1)).toBe(true);
  } finally {
    await proxy.close();
  }
});

test('a connection cut mid-PATCH: the client resumes from the reported offset, byte-exact', async () => {
  const proxy = await tcpProxy(Number(new URL(url()).port), { cutAfter: 7 * MiB });
  try {
    const data = randomBytesOf(12 * MiB);
    const result = await tusUpload(`${proxy.url}/v1/uploads`, data, { headers: auth(TOKEN_A) });
    expect(proxy.wasCut()).toBe(true);
    expect(inspectVideo(emulator, result.videoId!)).toMatchObject({
      completed: true,
      size: data.length,
      sha256: sha256(data),
    });
  } finally {
    await proxy.close();
  }
});

describe('the offset tells the truth', () => {
  test('the last part refused on every try: no success, HEAD < length; after recovery the resume completes byte-exact', async () => {
    const data = randomBytesOf(2 * P + 123);
    emulator.faults.add({ target: 'part', part: 3, status: 500, times: 1000 });
    let uploadUrl: string | undefined;
    const failed = await tusUpload(endpoint(), data, {
      headers: auth(TOKEN_A),
      retryDelays: [0, 50],
      removeFingerprintOnSuccess: false,
      onUrl: (u) => (uploadUrl = u),
    }).then(
      () => 'reported success',
      (err: Error) => err.message,
    );
    expect(failed).not.toBe('reported success');
    expect(failed).toMatch(/502/);
    const path = new URL(uploadUrl!).pathname;
    const head = await headOffset(url(), path);
    expect(head.offset).toBeLessThan(data.length);
    const { body } = await request(url()).get(path).set(auth(TOKEN_A));
    expect(body).toMatchObject({ completed: false, offset: head.offset, length: data.length });
    expect(inspectVideo(emulator, body.videoId).completed).toBe(false);

    emulator.faults.clear();
    const resumed = await tusUpload(endpoint(), data, {
      headers: auth(TOKEN_A),
      uploadUrl: uploadUrl!,
    });
    expect(resumed.videoId).toBe(body.videoId);
    const seen = inspectVideo(emulator, body.videoId);
    expect(seen).toMatchObject({ completed: true, size: data.length, sha256: sha256(data) });
    expect(seen.parts.at(-1)!.label).toBe('part 3/3');
  });

  test('the last part failing while the whole file is held: the offset stays one byte short', async () => {
    const path = await createUpload(url(), 1000);
    emulator.faults.add({ target: 'part', status: 500, times: 1000 });
    const data = randomBytesOf(1000);
    const answer = await patch(url(), path, 0, data);
    expect(answer.status).toBe(502);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'upstream_failed' });
    expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect((await headOffset(url(), path)).offset).toBe(999);
    emulator.faults.clear();
    const done = await patch(url(), path, 999, data.subarray(999));
    expect(done).toMatchObject({ status: 204, offset: '1000' });
    expect(done.headers['upload-video-id']).toMatch(/^vi/);
    const videoId = String(done.headers['upload-video-id']);
    expect(inspectVideo(emulator, videoId)).toMatchObject({
      completed: true,
      sha256: sha256(data),
    });
  });

  test('a part in the middle failing: the offset stays at the acknowledged prefix plus what is held', async () => {
    const path = await createUpload(url(), 3 * P);
    emulator.faults.add({ target: 'part', part: 2, status: 500, times: 1000 });
    const data = randomBytesOf(3 * P);
    const answer = await patch(url(), path, 0, data);
    expect(answer.status).toBe(502);
    const offset = (await headOffset(url(), path)).offset;
    // Part 1 acknowledged; part 2's bytes held (at most one part); nothing past them counted.
    expect(offset).toBeGreaterThanOrEqual(P);
    expect(offset).toBeLessThanOrEqual(2 * P);
    emulator.faults.clear();
    const done = await patch(url(), path, offset, data.subarray(offset));
    expect(done.status).toBe(204);
    expect(inspectVideo(emulator, String(done.headers['upload-video-id']))).toMatchObject({
      completed: true,
      sha256: sha256(data),
    });
  });

  test('GET /v1/uploads/{id} and HEAD always agree', async () => {
    const path = await createUpload(url(), 3 * MiB);
    for (const [offset, size] of [
      [0, MiB],
      [MiB, 1],
      [MiB + 1, MiB - 1],
    ] as const) {
      expect((await patch(url(), path, offset, randomBytesOf(size))).status).toBe(204);
      const head = await headOffset(url(), path);
      const { body } = await request(url()).get(path).set(auth(TOKEN_A));
      expect(body.offset).toBe(head.offset);
      expect(head.offset).toBe(offset + size);
    }
  });
});

test('two concurrent PATCHes for one upload never interleave: the offset holds one request’s bytes', async () => {
  const path = await createUpload(url(), 8 * MiB);
  const a = randomBytesOf(6 * MiB);
  const b = randomBytesOf(6 * MiB);
  const [ra, rb] = await Promise.all([patch(url(), path, 0, a), patch(url(), path, 0, b)]);
  // The newer request takes over (the older stops at its durable offset, 423), or finds the
  // offset moved (409): never both accepted from the same offset.
  expect([ra.status, rb.status].filter((s) => s === 204).length).toBeLessThanOrEqual(1);
  for (const r of [ra, rb]) expect([204, 409, 423]).toContain(r.status);
  const offset = (await headOffset(url(), path)).offset;
  expect(offset).toBeLessThanOrEqual(6 * MiB);
  const rest = randomBytesOf(8 * MiB - offset);
  const done = await patch(url(), path, offset, rest);
  expect(done.status).toBe(204);
  const videoId = String(done.headers['upload-video-id']);
  const seen = inspectVideo(emulator, videoId).sha256;
  const fromA = sha256([a.subarray(0, offset), rest]);
  const fromB = sha256([b.subarray(0, offset), rest]);
  expect([fromA, fromB]).toContain(seen);
});

test('a newer PATCH takes over from a stalled one at once (a phone that reconnected)', async () => {
  const path = await createUpload(url(), 4 * MiB);
  let feed!: (chunk: Buffer | null) => void;
  const stalled = (async function* () {
    yield randomBytesOf(MiB);
    await new Promise<void>((resolve) => (feed = () => resolve()));
  })();
  const first = patch(url(), path, 0, stalled);
  await eventually(async () => (await headOffset(url(), path)).offset === 0 && feed !== undefined);
  // The second request names offset 0 too, since nothing was durable when it asked.
  const second = await patch(url(), path, 0, randomBytesOf(4 * MiB));
  expect([204, 409]).toContain(second.status);
  expect((await first).status).toBe(423);
  feed(null);
});

test('only the principal that created an upload may read, resume or terminate it', async () => {
  const path = await createUpload(url(), 100);
  expect((await headOffset(url(), path, TOKEN_B)).status).toBe(404);
  expect((await patch(url(), path, 0, Buffer.alloc(10), TOKEN_B)).status).toBe(404);
  expect((await request(url()).delete(path).set(auth(TOKEN_B)).set(TUS)).status).toBe(404);
  const other = await request(url()).get(path).set(auth(TOKEN_B));
  expect(other.status).toBe(404);
  expect(other.body).toMatchObject({ code: 'upload_not_found' });
  expect((await request(url()).post('/v1/uploads').set(TUS).set('Upload-Length', '5')).status).toBe(
    401,
  );
  // The owner still sees it, untouched.
  expect(await headOffset(url(), path)).toMatchObject({ status: 200, offset: 0 });
});

test('GET /v1/uploads/{id} tells the offset, and the videoId once complete', async () => {
  const data = randomBytesOf(1000);
  const result = await tusUpload(endpoint(), data, { headers: auth(TOKEN_A) });
  const { body } = await request(url()).get(new URL(result.url).pathname).set(auth(TOKEN_A));
  expect(body).toMatchObject({
    offset: 1000,
    length: 1000,
    completed: true,
    videoId: result.videoId,
    video: { videoId: result.videoId },
  });
});

test('termination deletes the container and the session; a complete upload cannot be terminated', async () => {
  const path = await createUpload(url(), 12 * MiB);
  expect((await patch(url(), path, 0, randomBytesOf(6 * MiB))).status).toBe(204);
  const { body } = await request(url()).get(path).set(auth(TOKEN_A));
  expect(body.offset).toBe(6 * MiB);
  expect((await request(url()).delete(path).set(auth(TOKEN_A)).set(TUS)).status).toBe(204);
  expect(inspectVideo(emulator, body.videoId)).toMatchObject({ deleted: true, completed: false });
  expect((await headOffset(url(), path)).status).toBe(404);
  const failed = main.relay
    .logs()
    .find((l) => l.event === 'upload_finished' && l.videoId === body.videoId);
  expect(failed).toMatchObject({ outcome: 'upload_terminated', containerDeleted: true });

  const done = await tusUpload(endpoint(), randomBytesOf(10), { headers: auth(TOKEN_A) });
  const refused = await request(url())
    .delete(new URL(done.url).pathname)
    .set(auth(TOKEN_A))
    .set(TUS);
  expect(refused.status).toBe(409);
  expect(refused.body).toMatchObject({ code: 'upload_completed' });
  expect(inspectVideo(emulator, done.videoId!).deleted).toBe(false);
});

test('UPLOAD_SESSION_TTL: an expired upload is swept with its container and session', async () => {
  const shortLived = await relayWithRedis(emulator, { UPLOAD_SESSION_TTL: '1s' });
  try {
    const path = await createUpload(shortLived.relay.url, 12 * MiB);
    expect((await patch(shortLived.relay.url, path, 0, randomBytesOf(6 * MiB))).status).toBe(204);
    const { body } = await request(shortLived.relay.url).get(path).set(auth(TOKEN_A));
    await eventually(async () => (await shortLived.relay.sweepExpired()) === 1, 5000);
    expect(inspectVideo(emulator, body.videoId)).toMatchObject({ deleted: true });
    expect((await request(shortLived.relay.url).get(path).set(auth(TOKEN_A))).status).toBe(404);
    const line = shortLived.relay.logs().find((l) => l.event === 'upload_finished');
    expect(line).toMatchObject({
      outcome: 'upload_expired',
      expired: true,
      containerDeleted: true,
    });
  } finally {
    await shortLived.close();
  }
});

test('an empty upload is refused; no container is made', async () => {
  const before = emulator.videos.all().length;
  const res = await request(url())
    .post('/v1/uploads')
    .set(auth(TOKEN_A))
    .set(TUS)
    .set('Upload-Length', '0');
  expect(res.status).toBe(400);
  expect(res.body).toMatchObject({ code: 'empty_file' });
  expect(emulator.videos.all().length).toBe(before);
});

test('creation-with-upload: the first bytes come with the POST', async () => {
  const data = randomBytesOf(7 * MiB);
  const result = await tusUpload(endpoint(), data, {
    headers: auth(TOKEN_A),
    uploadDataDuringCreation: true,
    chunkSize: 6 * MiB,
  });
  expect(inspectVideo(emulator, result.videoId!)).toMatchObject({
    completed: true,
    sha256: sha256(data),
  });
});

test('metadata videoId: the upload goes into that container, which termination never deletes', async () => {
  const theirs = emulator.videos.create({ title: 'made elsewhere' });
  const data = randomBytesOf(1000);
  const result = await tusUpload(endpoint(), data, {
    headers: auth(TOKEN_A),
    metadata: { filename: 'a.mp4', videoId: theirs.videoId },
  });
  expect(result.videoId).toBe(theirs.videoId);
  expect(inspectVideo(emulator, theirs.videoId)).toMatchObject({
    completed: true,
    sha256: sha256(data),
  });
  const other = emulator.videos.create({ title: 'kept' });
  const path = await createUpload(
    url(),
    12 * MiB,
    TOKEN_A,
    `videoId ${Buffer.from(other.videoId).toString('base64')}`,
  );
  expect((await patch(url(), path, 0, randomBytesOf(6 * MiB))).status).toBe(204);
  expect((await request(url()).delete(path).set(auth(TOKEN_A)).set(TUS)).status).toBe(204);
  expect(inspectVideo(emulator, other.videoId).deleted).toBe(false);
});

test('a PATCH spanning several parts keeps UPLOAD_PART_CONCURRENCY parts in flight', async () => {
  const r = await relayWithRedis(emulator, { UPLOAD_PART_CONCURRENCY: '3' });
  try {
    emulator.stats.reset();
    emulator.faults.add({ target: 'part', delayMs: 300, times: 3 });
    const path = await createUpload(r.relay.url, 5 * P);
    const data = randomBytesOf(5 * P);
    const done = await patch(r.relay.url, path, 0, data);
    expect(done.status).toBe(204);
    expect(emulator.stats.maxPartsInFlight).toBe(3);
    const seen = inspectVideo(emulator, String(done.headers['upload-video-id']));
    expect(seen).toMatchObject({ completed: true, sha256: sha256(data) });
    expect(seen.parts.at(-1)!.label).toBe('part 5/5');
  } finally {
    await r.close();
  }
});

describe('the Redis lock', () => {
  let redis: Redis;
  beforeAll(async () => {
    redis = new Redis('redis://127.0.0.1:6379');
    await new Promise((resolve) => redis.once('ready', resolve));
  });
  afterAll(async () => {
    await redis.quit();
  });
  const never = () => undefined;

  test('a second holder (another instance) waits for the first; a lock left by a dead instance expires', async () => {
    const prefix = testPrefix();
    const id = 'lock-test';
    const first = await new RedisLocker(redis, prefix).acquire(
      id,
      AbortSignal.timeout(5000),
      never,
    );
    let secondHas = false;
    const waiting = new RedisLocker(redis, prefix)
      .acquire(id, AbortSignal.timeout(10_000), never)
      .then((lock) => ((secondHas = true), lock));
    // The second instance polls every 50 ms: give it several tries before letting go.
    await eventually(async () => (await redis.pttl(`${prefix}lock:${id}`)) > 0);
    await new Promise((r) => setTimeout(r, 200));
    expect(secondHas).toBe(false);
    await first.release();
    const second = await waiting;
    expect(secondHas).toBe(true);
    await second.release();
    // A crashed instance's lock: nobody renews or releases it; it is gone within its lease.
    await redis.set(`${prefix}lock:${id}`, 'dead-instance', 'PX', 800);
    const third = await new RedisLocker(redis, prefix).acquire(
      id,
      AbortSignal.timeout(10_000),
      never,
    );
    expect(await redis.get(`${prefix}lock:${id}`)).not.toBe('dead-instance');
    await third.release();
    expect(await redis.exists(`${prefix}lock:${id}`)).toBe(0);
  });

  test('a lock is only released by its owner, and one taken away fires `lost`', async () => {
    const prefix = testPrefix();
    const id = 'lock-owner';
    const lock = await new RedisLocker(redis, prefix).acquire(id, AbortSignal.timeout(5000), never);
    // As if ours had expired and been taken by another instance.
    await redis.set(`${prefix}lock:${id}`, 'someone-else', 'PX', 5000);
    await new Promise<void>((resolve) => lock.lost.addEventListener('abort', () => resolve()));
    expect(lock.lost.reason).toMatchObject({ code: 'upload_locked' });
    await lock.release();
    expect(await redis.get(`${prefix}lock:${id}`)).toBe('someone-else');
    await redis.del(`${prefix}lock:${id}`);
  });

  test('in one process, a newer request asks the holder to let go, and gets the lock once it has', async () => {
    const locker = new RedisLocker(redis, testPrefix());
    let asked = 0;
    const first = await locker.acquire('x', AbortSignal.timeout(5000), () => (asked += 1));
    const second = locker.acquire('x', AbortSignal.timeout(5000), never);
    await eventually(() => asked === 1);
    await first.release();
    await (await second).release();
  });
});
