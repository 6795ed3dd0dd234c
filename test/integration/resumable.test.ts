/**
 * tus 1.0 at /v1/uploads, with sessions in the real Redis: tus-js-client uploads the size table
 * byte-exact, small chunks are never asked again, and termination, expiry and ownership hold.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import request from 'supertest';
import { request as undici } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import { RedisLocker } from '../../src/resumable/redis-locker';
import { RedisSessionStore } from '../../src/resumable/sessions';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { inspectVideo, startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { tusUpload } from '../helpers/tus';
import { eventually } from '../helpers/wait';

const TOKEN_A = 'tus-token-alpha-0123456789';
const TOKEN_B = 'tus-token-bravo-0123456789';
const auth = (token: string) => ({ Authorization: `Bearer ${token}` });
let emulator: RunningEmulator;
let relay: TestRelay;
const redises: Redis[] = [];

async function relayWithRedis(env: Record<string, string> = {}) {
  const redis = new Redis('redis://127.0.0.1:6379');
  redises.push(redis);
  return startTestRelay(emulator, {
    env: {
      RELAY_API_TOKENS: `${TOKEN_A},${TOKEN_B}`,
      UPLOAD_PART_SIZE: '5MiB',
      LOG_LEVEL: 'warn',
      ...env,
    },
    resumable: { sessions: new RedisSessionStore(redis), locker: new RedisLocker(redis) },
  });
}

beforeAll(async () => {
  emulator = await startTestEmulator();
  relay = await relayWithRedis();
});
afterAll(async () => {
  await relay.close();
  await emulator.close();
  for (const r of redises) await r.quit();
});

const endpoint = () => `${relay.url}/v1/uploads`;
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

/** A TCP proxy that counts the bytes clients send, and can cut a connection after some bytes. */
async function countingProxy(target: string, cutAfter?: number) {
  const { port } = new URL(target);
  let total = 0;
  let cut = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(Number(port), '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('data', (d: Buffer) => {
      total += d.length;
      if (cutAfter !== undefined && !cut && total > cutAfter) {
        cut = true;
        client.destroy();
        upstream.destroy();
        return;
      }
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => client.write(d));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
  }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    sent: () => total,
    wasCut: () => cut,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

test('1 MiB chunks over 40 MiB: every chunk accepted at once, nothing sent twice', async () => {
  const proxy = await countingProxy(relay.url);
  const data = randomBytesOf(40 * MiB);
  let retries = 0;
  const result = await tusUpload(`${proxy.url}/v1/uploads`, data, {
    headers: auth(TOKEN_A),
    chunkSize: MiB,
    onShouldRetry: () => (retries++, true),
  });
  proxy.close();
  expect(retries).toBe(0);
  expect(inspectVideo(emulator, result.videoId!)).toMatchObject({
    completed: true,
    sha256: sha256(data),
  });
  // 40 PATCH bodies plus headers: a single re-sent chunk would add a whole MiB.
  expect(proxy.sent()).toBeGreaterThanOrEqual(40 * MiB);
  expect(proxy.sent()).toBeLessThan(40 * MiB + 64 * 1024);
  expect(inspectVideo(emulator, result.videoId!).parts.every((p) => p.received === 1)).toBe(true);
});

test('a connection cut mid-PATCH: the client resumes from the reported offset, byte-exact', async () => {
  const proxy = await countingProxy(relay.url, 7 * MiB);
  const data = randomBytesOf(12 * MiB);
  const result = await tusUpload(`${proxy.url}/v1/uploads`, data, { headers: auth(TOKEN_A) });
  proxy.close();
  expect(proxy.wasCut()).toBe(true);
  expect(inspectVideo(emulator, result.videoId!)).toMatchObject({
    completed: true,
    size: data.length,
    sha256: sha256(data),
  });
});

async function createUpload(length: number, token = TOKEN_A): Promise<string> {
  const res = await request(relay.url)
    .post('/v1/uploads')
    .set(auth(token))
    .set('Tus-Resumable', '1.0.0')
    .set('Upload-Length', String(length))
    .set('Upload-Metadata', `filename ${Buffer.from('x.mp4').toString('base64')}`);
  expect(res.status).toBe(201);
  return res.headers.location!;
}

function patch(path: string, offset: number, body: Buffer, token = TOKEN_A) {
  return undici(`${relay.url}${path}`, {
    method: 'PATCH',
    headers: {
      ...auth(token),
      'Tus-Resumable': '1.0.0',
      'Upload-Offset': String(offset),
      'Content-Type': 'application/offset+octet-stream',
    },
    body,
  }).then(async (r) => ({
    status: r.statusCode,
    offset: r.headers['upload-offset'],
    body: await r.body.text(),
  }));
}

test('two concurrent PATCHes for one upload never interleave: one wins, the other is refused', async () => {
  const path = await createUpload(8 * MiB);
  const a = randomBytesOf(6 * MiB);
  const b = randomBytesOf(6 * MiB);
  const [ra, rb] = await Promise.all([patch(path, 0, a), patch(path, 0, b)]);
  const won = [ra, rb].filter((r) => r.status === 204);
  expect(won.length).toBeGreaterThanOrEqual(1);
  const head = await request(relay.url).head(path).set(auth(TOKEN_A)).set('Tus-Resumable', '1.0.0');
  const offset = Number(head.headers['upload-offset']);
  // Whatever landed is one request's bytes from offset 0, never a mix of the two.
  expect(offset).toBeGreaterThan(0);
  expect(offset).toBeLessThanOrEqual(6 * MiB);
  const winner = ra.status === 204 && Number(ra.offset) === offset ? a : b;
  const rest = randomBytesOf(8 * MiB - offset);
  const done = await patch(path, offset, rest);
  expect(done.status).toBe(204);
  const { body } = await request(relay.url).get(path).set(auth(TOKEN_A));
  expect(inspectVideo(emulator, body.videoId)).toMatchObject({
    completed: true,
    sha256: sha256([winner.subarray(0, offset), rest]),
  });
});

test('only the principal that created an upload may read, resume or terminate it', async () => {
  const path = await createUpload(100);
  expect(
    (await request(relay.url).head(path).set(auth(TOKEN_B)).set('Tus-Resumable', '1.0.0')).status,
  ).toBe(403);
  expect((await patch(path, 0, Buffer.alloc(10), TOKEN_B)).status).toBe(403);
  expect(
    (await request(relay.url).delete(path).set(auth(TOKEN_B)).set('Tus-Resumable', '1.0.0')).status,
  ).toBe(403);
  expect((await request(relay.url).get(path).set(auth(TOKEN_B))).body).toMatchObject({
    code: 'forbidden',
  });
  expect(
    (
      await request(relay.url)
        .post('/v1/uploads')
        .set('Tus-Resumable', '1.0.0')
        .set('Upload-Length', '5')
    ).status,
  ).toBe(401);
});

test('GET /v1/uploads/{id} tells the offset, and the videoId once complete', async () => {
  const data = randomBytesOf(1000);
  const result = await tusUpload(endpoint(), data, { headers: auth(TOKEN_A) });
  const { body } = await request(relay.url).get(new URL(result.url).pathname).set(auth(TOKEN_A));
  expect(body).toMatchObject({
    offset: 1000,
    length: 1000,
    completed: true,
    videoId: result.videoId,
    video: { videoId: result.videoId },
  });
});

test('termination deletes the container and the session', async () => {
  const path = await createUpload(12 * MiB);
  expect((await patch(path, 0, randomBytesOf(6 * MiB))).status).toBe(204);
  const { body } = await request(relay.url).get(path).set(auth(TOKEN_A));
  expect(body.offset).toBe(6 * MiB);
  const del = await request(relay.url)
    .delete(path)
    .set(auth(TOKEN_A))
    .set('Tus-Resumable', '1.0.0');
  expect(del.status).toBe(204);
  expect(inspectVideo(emulator, body.videoId)).toMatchObject({ deleted: true, completed: false });
  expect(
    (await request(relay.url).head(path).set(auth(TOKEN_A)).set('Tus-Resumable', '1.0.0')).status,
  ).toBe(404);
});

test('UPLOAD_SESSION_TTL: an expired upload is swept with its container and session', async () => {
  const shortLived = await relayWithRedis({ UPLOAD_SESSION_TTL: '1s' });
  const res = await request(shortLived.url)
    .post('/v1/uploads')
    .set(auth(TOKEN_A))
    .set('Tus-Resumable', '1.0.0')
    .set('Upload-Length', String(12 * MiB));
  const path = res.headers.location!;
  expect(res.headers['upload-expires']).toBeDefined();
  await undici(`${shortLived.url}${path}`, {
    method: 'PATCH',
    headers: {
      ...auth(TOKEN_A),
      'Tus-Resumable': '1.0.0',
      'Upload-Offset': '0',
      'Content-Type': 'application/offset+octet-stream',
    },
    body: randomBytesOf(6 * MiB),
  }).then((r) => r.body.dump());
  const { body } = await request(shortLived.url).get(path).set(auth(TOKEN_A));
  await new Promise((r) => setTimeout(r, 1100));
  const store = shortLived.resumableStore;
  expect(await store.deleteExpired()).toBeGreaterThanOrEqual(1);
  expect(inspectVideo(emulator, body.videoId)).toMatchObject({ deleted: true });
  expect((await request(shortLived.url).get(path).set(auth(TOKEN_A))).status).toBe(404);
  await shortLived.close();
});

test('an empty upload is refused; no container is made', async () => {
  const before = emulator.videos.all().length;
  const res = await request(relay.url)
    .post('/v1/uploads')
    .set(auth(TOKEN_A))
    .set('Tus-Resumable', '1.0.0')
    .set('Upload-Length', '0');
  expect(res.status).toBe(400);
  expect(emulator.videos.all().length).toBe(before);
  await eventually(() => true);
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
  const created = await request(relay.url)
    .post('/v1/uploads')
    .set(auth(TOKEN_A))
    .set('Tus-Resumable', '1.0.0')
    .set('Upload-Length', String(12 * MiB))
    .set('Upload-Metadata', `videoId ${Buffer.from(other.videoId).toString('base64')}`);
  const path = created.headers.location!;
  expect((await patch(path, 0, randomBytesOf(6 * MiB))).status).toBe(204);
  expect(
    (await request(relay.url).delete(path).set(auth(TOKEN_A)).set('Tus-Resumable', '1.0.0')).status,
  ).toBe(204);
  expect(inspectVideo(emulator, other.videoId).deleted).toBe(false);
});

describe('the Redis lock', () => {
  test('a second holder waits for the first; a lock left by a dead instance expires', async () => {
    const redis = new Redis('redis://127.0.0.1:6379');
    redises.push(redis);
    const id = `lock-test-${Date.now()}`;
    const first = new RedisLocker(redis).newLock(id);
    const second = new RedisLocker(redis).newLock(id); // another "instance": no in-process release
    await first.lock(new AbortController().signal, () => undefined);
    let secondHas = false;
    const waiting = second
      .lock(AbortSignal.timeout(10_000), () => undefined)
      .then(() => (secondHas = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(secondHas).toBe(false);
    await first.unlock();
    await waiting;
    expect(secondHas).toBe(true);
    await second.unlock();
    // A crashed instance's lock: nobody renews or releases it; it is gone within its 5 s lease.
    await redis.set(`apivideo-relay:lock:${id}`, 'dead-instance', 'PX', 800);
    const started = Date.now();
    const third = new RedisLocker(redis).newLock(id);
    await third.lock(AbortSignal.timeout(10_000), () => undefined);
    expect(Date.now() - started).toBeGreaterThanOrEqual(700);
    await third.unlock();
    expect(await redis.exists(`apivideo-relay:lock:${id}`)).toBe(0);
  });

  test('a lock is only released by its owner', async () => {
    const redis = new Redis('redis://127.0.0.1:6379');
    redises.push(redis);
    const id = `lock-owner-${Date.now()}`;
    const lock = new RedisLocker(redis).newLock(id);
    await lock.lock(new AbortController().signal, () => undefined);
    await redis.set(`apivideo-relay:lock:${id}`, 'someone-else', 'PX', 5000); // as if ours had expired and been taken
    await lock.unlock();
    expect(await redis.get(`apivideo-relay:lock:${id}`)).toBe('someone-else');
    await redis.del(`apivideo-relay:lock:${id}`);
  });
});
