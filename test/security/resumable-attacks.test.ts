/**
 * The attack catalogue, continued (issue #13 points 1, 3 and 4): URL shapes × methods ×
 * principals on resumable uploads, named containers that are not the caller's, clients that leave
 * at each step of an upload (the emulator's view is checked for leftovers), and metric labels
 * under a flood of forged addresses.
 */
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import request from 'supertest';
import { request as undici } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import { MiB, randomBytesOf } from '../helpers/data';
import { inspectVideo, ownedBy, startTestEmulator } from '../helpers/emulator';
import {
  TOKEN_A,
  TOKEN_B,
  TUS,
  auth,
  createUpload,
  headOffset,
  patch,
  relayWithRedis,
  type RedisRelay,
} from '../helpers/resumable';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { eventually } from '../helpers/wait';

/** The principal string of TOKEN_A, as client-auth derives it. */
const ALICE = `token:${createHash('sha256').update(TOKEN_A).digest('hex').slice(0, 12)}`;

let emulator: RunningEmulator;
let main: RedisRelay;
beforeAll(async () => {
  emulator = await startTestEmulator();
  main = await relayWithRedis(emulator, { LOG_LEVEL: 'info' });
});
afterAll(async () => {
  await main?.close();
  await emulator?.close();
});
afterEach(() => emulator.faults.clear());

/** Sends one request with the path exactly as written (node:http does not normalise it). */
function raw(
  url: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body = Buffer.alloc(0),
): Promise<number> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port: Number(port),
      method,
      path,
      headers: { ...headers, 'Content-Length': String(body.length) },
      agent: false,
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('resumable uploads: URL shapes × methods × principals', () => {
  const shapes = (id: string, other: string): Array<[string, string]> => [
    ['the plain path', `/v1/uploads/${id}`],
    ['a trailing slash', `/v1/uploads/${id}/`],
    ['the id in a query string on the bare path', `/v1/uploads?x=/${id}`],
    ['the id in a query string after a slash', `/v1/uploads/?x=/${id}`],
    ['another upload’s path with the id in the query', `/v1/uploads/${other}?x=/${id}`],
    ['an encoded slash before the id', `/v1/uploads/${other}%2F${id}`],
    ['an encoded slash after the id', `/v1/uploads/${id}%2F`],
    ['a dot segment', `/v1/uploads/${other}/../${id}`],
    ['a double slash', `/v1/uploads//${id}`],
    ['a matrix parameter', `/v1/uploads/${id};x=1`],
    ['a fragment', `/v1/uploads/${other}#/${id}`],
    ['the id percent-encoded', `/v1/uploads/${encodeAll(id)}`],
  ];
  const methods: Array<[string, Record<string, string>]> = [
    ['HEAD', {}],
    ['GET', {}],
    ['PATCH', { 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' }],
    ['DELETE', {}],
    [
      'POST',
      {
        'X-HTTP-Method-Override': 'PATCH',
        'Upload-Offset': '0',
        'Content-Type': 'application/offset+octet-stream',
      },
    ],
    ['POST', { 'X-HTTP-Method-Override': 'DELETE' }],
  ];

  test('Bob never reaches Alice’s upload, whatever the URL or method; Alice’s upload is untouched', async () => {
    const alice = await createUpload(main.relay.url, 12 * MiB, TOKEN_A);
    const bobs = await createUpload(main.relay.url, 12 * MiB, TOKEN_B);
    const aliceId = alice.split('/').at(-1)!;
    const bobId = bobs.split('/').at(-1)!;
    expect((await patch(main.relay.url, alice, 0, randomBytesOf(MiB))).status).toBe(204);
    const videoOfAlice = (await request(main.relay.url).get(alice).set(auth(TOKEN_A))).body
      .videoId as string;
    const refused: string[] = [];
    for (const [shape, path] of shapes(aliceId, bobId)) {
      for (const [method, headers] of methods) {
        const status = await raw(
          main.relay.url,
          method,
          path,
          { ...auth(TOKEN_B), ...TUS, ...headers },
          method === 'PATCH' || headers['X-HTTP-Method-Override'] === 'PATCH'
            ? Buffer.from('bob')
            : undefined,
        );
        // Bob's own upload may be reached through a shape naming it: that is his, not Alice's.
        if (status >= 200 && status < 300 && !path.includes(bobId))
          refused.push(`${method} ${path} (${shape}) answered ${status}`);
      }
    }
    expect(refused).toEqual([]);
    expect(await headOffset(main.relay.url, alice)).toMatchObject({ status: 200, offset: MiB });
    expect(inspectVideo(emulator, videoOfAlice)).toMatchObject({ deleted: false });
  });

  test('Bob’s request on Alice’s upload does not stop Alice’s request in flight (no lock is taken before ownership)', async () => {
    const alice = await createUpload(main.relay.url, 2 * MiB, TOKEN_A);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let sent = false;
    const inFlight = patch(
      main.relay.url,
      alice,
      0,
      (async function* () {
        yield randomBytesOf(MiB);
        sent = true;
        await gate;
        yield randomBytesOf(MiB);
      })(),
    );
    await eventually(() => sent);
    for (const method of ['PATCH', 'DELETE']) {
      const status = await raw(
        main.relay.url,
        method,
        alice,
        {
          ...auth(TOKEN_B),
          ...TUS,
          'Upload-Offset': '0',
          'Content-Type': 'application/offset+octet-stream',
        },
        method === 'PATCH' ? Buffer.from('bob') : undefined,
      );
      expect(status).toBe(404);
    }
    release();
    expect((await inFlight).status).toBe(204);
  });

  test.each([
    ['a made-up id', '/v1/uploads/AAAAAAAAAAAAAAAAAAAAAA'],
    ['an id that is too long', `/v1/uploads/${'A'.repeat(300)}`],
    ['an id with a NUL', '/v1/uploads/abc%00def'],
    ['a Redis-key-shaped id', '/v1/uploads/x:lock:*'],
    ['unicode', '/v1/uploads/%E2%80%AE%E2%80%AE'],
  ])('%s: 404 upload_not_found for every method', async (_what, path) => {
    for (const method of ['HEAD', 'GET', 'PATCH', 'DELETE'] as const) {
      const res = await undici(`${main.relay.url}${path}`, {
        method,
        headers: {
          ...auth(TOKEN_A),
          ...TUS,
          'Upload-Offset': '0',
          'Content-Type': 'application/offset+octet-stream',
        },
        body: method === 'PATCH' ? 'x' : undefined,
      });
      const text = await res.body.text();
      expect(res.statusCode).toBe(404);
      if (method !== 'HEAD') expect(JSON.parse(text)).toMatchObject({ code: 'upload_not_found' });
    }
  });

  test('no credentials: 401 before any lookup, for every method', async () => {
    const alice = await createUpload(main.relay.url, 10, TOKEN_A);
    for (const method of ['HEAD', 'GET', 'PATCH', 'DELETE'] as const) {
      const res = await undici(`${main.relay.url}${alice}`, { method, headers: TUS });
      await res.body.dump();
      expect(res.statusCode).toBe(401);
    }
  });
});

describe('named containers that are not the caller’s', () => {
  let relay: TestRelay;
  const JWT_SECRET = 'a-shared-secret-of-at-least-32-characters!';
  beforeAll(async () => {
    relay = await startTestRelay(emulator, {
      env: {
        RELAY_API_TOKENS: `${TOKEN_A},${TOKEN_B}`,
        RELAY_JWT_SECRET: JWT_SECRET,
        LOG_LEVEL: 'warn',
      },
    });
  });
  afterAll(() => relay.close());

  test('another principal’s container: 404 video_not_found, no part sent, the video untouched', async () => {
    const made = await request(relay.url)
      .post('/v1/videos?title=alice')
      .set(auth(TOKEN_A))
      .set('Content-Type', 'video/mp4')
      .send(randomBytesOf(10));
    expect(made.status).toBe(201);
    const aliceVideo = made.body.videoId as string;
    const unfinished = emulator.videos.create(ownedBy(ALICE, { title: 'unfinished' }));
    for (const videoId of [aliceVideo, unfinished.videoId]) {
      emulator.stats.reset();
      const res = await request(relay.url)
        .post(`/v1/videos?videoId=${videoId}`)
        .set(auth(TOKEN_B))
        .set('Content-Type', 'video/mp4')
        .send(randomBytesOf(10));
      expect(res.status).toBe(404);
      expect(res.body).toMatchObject({ code: 'video_not_found' });
      expect(emulator.stats.partRequests).toBe(0);
    }
    const viaTus = await request(relay.url)
      .post('/v1/uploads')
      .set(auth(TOKEN_B))
      .set(TUS)
      .set('Upload-Length', '10')
      .set('Upload-Metadata', `videoId ${Buffer.from(aliceVideo).toString('base64')}`);
    expect(viaTus.status).toBe(201);
    const refused = await patch(relay.url, viaTus.headers.location!, 0, randomBytesOf(10), TOKEN_B);
    expect(refused.status).toBe(404);
    expect(JSON.parse(refused.body)).toMatchObject({ code: 'video_not_found' });
    expect(inspectVideo(emulator, aliceVideo)).toMatchObject({ deleted: false, completed: true });
  });

  test('a container the app’s backend made (no owner mark): open to static tokens only', async () => {
    const { SignJWT } = await import('jose');
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('user-1')
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(JWT_SECRET));
    const backends = emulator.videos.create({ title: 'made by the backend' });
    const byUser = await request(relay.url)
      .post(`/v1/videos?videoId=${backends.videoId}`)
      .set(auth(jwt))
      .set('Content-Type', 'video/mp4')
      .send(randomBytesOf(10));
    expect(byUser.body).toMatchObject({ code: 'video_not_found' });
    const byBackend = await request(relay.url)
      .post(`/v1/videos?videoId=${backends.videoId}`)
      .set(auth(TOKEN_A))
      .set('Content-Type', 'video/mp4')
      .send(randomBytesOf(10));
    expect(byBackend.status).toBe(201);
  });
});

describe('clients that leave at each step: no container is left behind', () => {
  const newVideos = (before: Set<string>) =>
    emulator.videos.all().filter((v) => !before.has(v.videoId));

  /** Starts a raw upload and returns the socket, after `bytes` of the body. */
  async function startRaw(url: string, bytes: number, total: number) {
    const { port } = new URL(url);
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    socket.on('error', () => undefined);
    socket.write(
      `POST /v1/videos?title=leaver HTTP/1.1\r\nHost: x\r\n${Object.entries(auth(TOKEN_A))
        .map(([k, v]) => `${k}: ${v}`)
        .join('')}\r\nContent-Type: video/mp4\r\nContent-Length: ${total}\r\n\r\n`,
    );
    if (bytes > 0) socket.write(randomBytesOf(bytes));
    return socket;
  }

  test.each([
    ['while the container is being created', 'create', 1000],
    ['while the first part is in flight', 'part1', 6 * MiB],
    ['while the last part is in flight', 'last', 7 * MiB],
  ] as const)('%s', async (_when, step, sent) => {
    const before = new Set(emulator.videos.all().map((v) => v.videoId));
    const seen = emulator.requestLog.length;
    if (step === 'create') emulator.faults.add({ target: 'create', delayMs: 400 });
    if (step === 'part1') emulator.faults.add({ target: 'part', part: 1, delayMs: 400 });
    if (step === 'last') emulator.faults.add({ target: 'part', part: 2, delayMs: 400 });
    const socket = await startRaw(main.relay.url, sent, step === 'last' ? sent : 50 * MiB);
    // Leave once api.video has been asked for the step, not after a guessed delay.
    const asked = (method: string, part: RegExp) =>
      emulator.requestLog.slice(seen).some((r) => r.method === method && part.test(r.url));
    if (step === 'create') await eventually(() => asked('POST', /^\/videos$/));
    else await eventually(() => asked('POST', /\/source$/) && newVideos(before).length === 1);
    if (step === 'last')
      await eventually(() => emulator.stats.partLog.some((p) => p.contentRange === 'part 2/2'));
    socket.destroy();
    await eventually(() => newVideos(before).length === 1, 5000);
    const [video] = newVideos(before);
    await eventually(
      () =>
        inspectVideo(emulator, video!.videoId).deleted ||
        inspectVideo(emulator, video!.videoId).completed,
      5000,
    );
    const state = inspectVideo(emulator, video!.videoId);
    // A last part api.video acknowledged completes the video; anything else leaves nothing.
    if (step === 'last') expect(state.deleted).toBe(!state.completed);
    else expect(state).toMatchObject({ deleted: true, completed: false });
  });

  test('twenty leaves during container creation: twenty containers made, twenty deleted', async () => {
    const before = new Set(emulator.videos.all().map((v) => v.videoId));
    emulator.faults.add({ target: 'create', delayMs: 150, times: 20 });
    for (let i = 0; i < 20; i += 1) {
      const seen = emulator.requestLog.length;
      const socket = await startRaw(main.relay.url, 1000, 50 * MiB);
      await eventually(() =>
        emulator.requestLog.slice(seen).some((r) => r.method === 'POST' && r.url === '/videos'),
      );
      socket.destroy();
    }
    await eventually(() => newVideos(before).length === 20, 10_000);
    await eventually(
      () => newVideos(before).every((v) => inspectVideo(emulator, v.videoId).deleted),
      10_000,
    );
  });

  test('a resumable upload whose client leaves during container creation keeps the container in its session; DELETE removes it', async () => {
    const before = new Set(emulator.videos.all().map((v) => v.videoId));
    emulator.faults.add({ target: 'create', delayMs: 300 });
    const path = await createUpload(main.relay.url, 10 * MiB);
    const seen = emulator.requestLog.length;
    const leaving = patch(
      main.relay.url,
      path,
      0,
      (async function* () {
        yield randomBytesOf(1000);
        await new Promise(() => undefined);
      })(),
      TOKEN_A,
    ).catch(() => 'left');
    await eventually(() =>
      emulator.requestLog.slice(seen).some((r) => r.method === 'POST' && r.url === '/videos'),
    );
    // Cut the PATCH by closing every connection of the relay's server.
    main.relay.server.closeAllConnections();
    await leaving;
    await eventually(() => newVideos(before).length === 1);
    const [video] = newVideos(before);
    await eventually(async () => {
      const res = await request(main.relay.url).get(path).set(auth(TOKEN_A));
      return res.body.videoId === video!.videoId;
    });
    expect((await request(main.relay.url).delete(path).set(auth(TOKEN_A)).set(TUS)).status).toBe(
      204,
    );
    expect(inspectVideo(emulator, video!.videoId).deleted).toBe(true);
  });
});

test('metric labels stay bounded: 1000 requests from forged addresses add no series and name nobody', async () => {
  const relay = await startTestRelay(emulator, {
    env: { TRUST_PROXY: 'true', LOG_LEVEL: 'silent', UPLOAD_MAX_CONCURRENT: '1000' },
  });
  try {
    const series = async () =>
      (await request(relay.url).get('/metrics')).text
        .split('\n')
        .filter((l) => l.startsWith('relay_'));
    await request(relay.url).post('/v1/videos').set('Content-Type', 'text/plain').send('x');
    const before = await series();
    for (let i = 0; i < 1000; i += 1) {
      const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      const res = await undici(`${relay.url}/v1/videos`, {
        method: 'POST',
        headers: { 'x-forwarded-for': ip, 'content-type': 'text/plain' },
        body: 'x',
      });
      await res.body.dump();
      expect(res.statusCode).toBe(415);
    }
    const after = await series();
    expect(after.length).toBe(before.length);
    const text = after.join('\n');
    expect(text).not.toMatch(/10\.0\.\d+\.\d+/);
    expect(text).not.toMatch(/anonymous|principal/);
  } finally {
    await relay.close();
  }
});

function encodeAll(text: string): string {
  return [...Buffer.from(text)]
    .map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`)
    .join('');
}
