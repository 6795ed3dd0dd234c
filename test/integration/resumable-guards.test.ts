/**
 * Resumable uploads get every guard POST /v1/videos has: limits, timeouts, the drain, metrics and
 * log lines, CORS, problem+json, 100-continue; and the session store's traffic follows the bytes,
 * survives an outage, and a write whose lock was lost stops.
 */
import { request as httpRequest } from 'node:http';
import request from 'supertest';
import type { RunningEmulator } from '../../src/emulator/app';
import { RelayError } from '../../src/kernel/errors';
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
  type RedisRelay,
} from '../helpers/resumable';
import { tcpProxy } from '../helpers/tcp-proxy';
import { tusUpload } from '../helpers/tus';
import { eventually } from '../helpers/wait';

let emulator: RunningEmulator;
beforeAll(async () => {
  emulator = await startTestEmulator();
});
afterAll(async () => {
  await emulator?.close();
});
afterEach(() => emulator.faults.clear());

/** A request body that sends `first` bytes, then waits until released (or ended). */
function stalledBody(first: Buffer) {
  let release!: (rest?: Buffer) => void;
  const gate = new Promise<Buffer | undefined>((resolve) => (release = resolve));
  let sent = false;
  async function* body() {
    yield first;
    sent = true;
    const rest = await gate;
    if (rest) yield rest;
  }
  return { body: body(), release, sent: () => sent };
}

async function withRelay(
  env: Record<string, string>,
  run: (r: RedisRelay) => Promise<void>,
  options: Parameters<typeof relayWithRedis>[2] = {},
) {
  const r = await relayWithRedis(emulator, env, options);
  try {
    await run(r);
  } finally {
    await r.close();
  }
}

describe('limits', () => {
  test('UPLOAD_MAX_SESSIONS_PER_CLIENT: one creation more is 429 too_many_sessions, nothing made; termination frees a place', async () => {
    await withRelay({ UPLOAD_MAX_SESSIONS_PER_CLIENT: '2' }, async ({ relay }) => {
      const before = emulator.videos.all().length;
      const first = await createUpload(relay.url, 100);
      await createUpload(relay.url, 100);
      const refused = await request(relay.url)
        .post('/v1/uploads')
        .set(auth(TOKEN_A))
        .set(TUS)
        .set('Upload-Length', '100');
      expect(refused.status).toBe(429);
      expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(refused.body).toMatchObject({
        code: 'too_many_sessions',
        requestId: refused.headers['x-request-id'],
      });
      // Another client is not affected; the first gets a place back by ending an upload.
      await createUpload(relay.url, 100, TOKEN_B);
      expect((await request(relay.url).delete(first).set(auth(TOKEN_A)).set(TUS)).status).toBe(204);
      await createUpload(relay.url, 100);
      expect(emulator.videos.all().length).toBe(before);
    });
  });

  test('a PATCH in flight holds an UPLOAD_MAX_CONCURRENT slot: creation and PATCH are refused with nothing created', async () => {
    await withRelay({ UPLOAD_MAX_CONCURRENT: '1' }, async ({ relay }) => {
      const path = await createUpload(relay.url, 4 * MiB);
      const other = await createUpload(relay.url, 4 * MiB, TOKEN_B);
      const before = emulator.videos.all().length;
      const stalled = stalledBody(randomBytesOf(MiB));
      const inFlight = patch(relay.url, path, 0, stalled.body);
      // The PATCH in flight has made its container: from now on, nothing else may.
      await eventually(() => stalled.sent() && emulator.videos.all().length === before + 1);
      const videos = emulator.videos.all().length;
      const creation = await request(relay.url)
        .post('/v1/uploads')
        .set(auth(TOKEN_B))
        .set(TUS)
        .set('Upload-Length', '10');
      expect(creation.status).toBe(503);
      expect(creation.body).toMatchObject({ code: 'too_many_uploads' });
      const refused = await patch(relay.url, other, 0, randomBytesOf(10), TOKEN_B);
      expect(refused.status).toBe(503);
      expect(JSON.parse(refused.body)).toMatchObject({ code: 'too_many_uploads' });
      expect(emulator.videos.all().length).toBe(videos);
      stalled.release(randomBytesOf(3 * MiB));
      expect((await inFlight).status).toBe(204);
    });
  });

  test('UPLOAD_MAX_CONCURRENT_PER_CLIENT applies to PATCHes', async () => {
    await withRelay({ UPLOAD_MAX_CONCURRENT_PER_CLIENT: '1' }, async ({ relay }) => {
      const a = await createUpload(relay.url, 2 * MiB);
      const b = await createUpload(relay.url, 2 * MiB);
      const stalled = stalledBody(randomBytesOf(MiB));
      const inFlight = patch(relay.url, a, 0, stalled.body);
      await eventually(() => stalled.sent());
      const refused = await patch(relay.url, b, 0, randomBytesOf(10));
      expect(refused.status).toBe(429);
      expect(JSON.parse(refused.body)).toMatchObject({ code: 'too_many_uploads_per_client' });
      stalled.release(randomBytesOf(MiB));
      expect((await inFlight).status).toBe(204);
    });
  });

  test('UPLOAD_SESSION_STORE_MAX_BYTES: what does not fit is not counted (503 session_store_full with the offset), and a full store blocks no upload that needs none of it', async () => {
    await withRelay({ UPLOAD_SESSION_STORE_MAX_BYTES: '5MiB' }, async ({ relay }) => {
      const a = await createUpload(relay.url, 20 * MiB);
      const b = await createUpload(relay.url, 20 * MiB, TOKEN_B);
      expect((await patch(relay.url, a, 0, randomBytesOf(3 * MiB))).status).toBe(204);
      const full = await patch(relay.url, b, 0, randomBytesOf(3 * MiB), TOKEN_B);
      expect(full.status).toBe(503);
      expect(full.headers['retry-after']).toBeDefined();
      expect(JSON.parse(full.body)).toMatchObject({ code: 'session_store_full' });
      // 2 MiB fitted and count; the rest is sent again later.
      expect(full.offset).toBe(String(2 * MiB));
      expect((await headOffset(relay.url, b, TOKEN_B)).offset).toBe(2 * MiB);
      // Another client's whole upload goes straight to api.video: the full store stops nobody.
      const small = await createUpload(relay.url, 1000, TOKEN_B);
      const done = await patch(relay.url, small, 0, randomBytesOf(1000), TOKEN_B);
      expect(done.status).toBe(204);
      expect(done.headers['upload-video-id']).toMatch(/^vi/);
      // Ending an upload frees its bytes, and the other goes on.
      expect((await request(relay.url).delete(b).set(auth(TOKEN_B)).set(TUS)).status).toBe(204);
      expect((await patch(relay.url, a, 3 * MiB, randomBytesOf(MiB))).status).toBe(204);
    });
  });
});

describe('timeouts', () => {
  test('UPLOAD_IDLE_TIMEOUT_MS on a stalled PATCH: 408 with the offset, and the bytes before the stall kept', async () => {
    await withRelay({ UPLOAD_IDLE_TIMEOUT_MS: '300' }, async ({ relay }) => {
      const path = await createUpload(relay.url, 4 * MiB);
      const stalled = stalledBody(randomBytesOf(MiB));
      const answer = await patch(relay.url, path, 0, stalled.body);
      stalled.release();
      expect(answer.status).toBe(408);
      expect(JSON.parse(answer.body)).toMatchObject({ code: 'upload_idle_timeout' });
      expect(answer.offset).toBe(String(MiB));
      expect((await headOffset(relay.url, path)).offset).toBe(MiB);
    });
  });

  test('UPLOAD_REQUEST_TIMEOUT_MS bounds a PATCH that keeps dripping', async () => {
    await withRelay({ UPLOAD_REQUEST_TIMEOUT_MS: '400' }, async ({ relay }) => {
      const path = await createUpload(relay.url, 4 * MiB);
      let stop = false;
      async function* drip() {
        while (!stop) {
          yield randomBytesOf(1024);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      const answer = await patch(relay.url, path, 0, drip());
      stop = true;
      expect(answer.status).toBe(408);
      expect(JSON.parse(answer.body)).toMatchObject({ code: 'upload_timeout' });
      expect(Number(answer.offset)).toBe((await headOffset(relay.url, path)).offset);
    });
  });
});

test('the drain: a PATCH that finishes within the grace is answered 204; one still running ends with 503 and its durable offset; new requests get 503 shutting_down, with the offset', async () => {
  await withRelay({}, async ({ relay }) => {
    const finishing = await createUpload(relay.url, 2 * MiB);
    const stalling = await createUpload(relay.url, 4 * MiB);
    const later = await createUpload(relay.url, 100);
    const a = stalledBody(randomBytesOf(MiB));
    const b = stalledBody(randomBytesOf(MiB));
    const answerA = patch(relay.url, finishing, 0, a.body);
    const answerB = patch(relay.url, stalling, 0, b.body);
    // Both PATCHes are in progress at the relay, their first MiB received.
    const received = async () =>
      (await relay.relay.metrics.bytesReceived.get()).values[0]?.value ?? 0;
    await eventually(async () => relay.lifecycle.inProgress === 2 && (await received()) >= 2 * MiB);
    // The grace ends when the test says so (as a second SIGTERM does), not on a timer a busy
    // machine could outrun.
    const drained = relay.lifecycle.drain(
      600_000,
      () =>
        new RelayError('shutting_down', 'The relay shut down.', {
          headers: { 'Retry-After': '5' },
        }),
    );
    const refused = await patch(relay.url, later, 0, randomBytesOf(10));
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.body)).toMatchObject({ code: 'shutting_down' });
    expect(refused.offset).toBe('0');
    const creation = await request(relay.url)
      .post('/v1/uploads')
      .set(auth(TOKEN_A))
      .set(TUS)
      .set('Upload-Length', '10');
    expect(creation.body).toMatchObject({ code: 'shutting_down' });
    a.release(randomBytesOf(MiB));
    expect((await answerA).status).toBe(204);
    relay.lifecycle.endGrace();
    const cut = await answerB;
    expect(cut.status).toBe(503);
    expect(JSON.parse(cut.body)).toMatchObject({ code: 'shutting_down' });
    expect(cut.offset).toBe(String(MiB));
    expect(await drained).toBe('aborted');
    b.release();
    expect((await headOffset(relay.url, stalling)).offset).toBe(MiB);
  });
});

describe('Redis traffic follows the bytes', () => {
  test('1 MiB chunks: what is written to and read from Redis stays within 1.2 × the bytes that pass through the tail', async () => {
    const proxy = await tcpProxy(6379, { scheme: 'redis' });
    try {
      await withRelay(
        {},
        async ({ relay }) => {
          const data = randomBytesOf(20 * MiB);
          const before = { sent: proxy.sent(), received: proxy.received() };
          const result = await tusUpload(`${relay.url}/v1/uploads`, data, {
            headers: auth(TOKEN_A),
            chunkSize: MiB,
          });
          expect(inspectVideo(emulator, result.videoId!)).toMatchObject({
            completed: true,
            sha256: sha256(data),
          });
          const written = proxy.sent() - before.sent;
          const read = proxy.received() - before.received;
          // Every byte but the last part's final chunk waits in the tail once (20 MiB at most).
          expect(written).toBeLessThan(1.2 * 20 * MiB);
          expect(read).toBeLessThan(1.2 * 20 * MiB);
          // The old store rewrote and re-read the whole tail on every PATCH: about 3× here.
          expect(written).toBeGreaterThan(15 * MiB);
          // HEADs never read the tail.
          const path = await createUpload(relay.url, 20 * MiB);
          await patch(relay.url, path, 0, randomBytesOf(4 * MiB));
          const headsFrom = proxy.received() + proxy.sent();
          for (let i = 0; i < 50; i += 1) await headOffset(relay.url, path);
          expect(proxy.received() + proxy.sent() - headsFrom).toBeLessThan(50 * 2048);
        },
        { redisUrl: proxy.url },
      );
    } finally {
      await proxy.close();
    }
  });

  test('200 one-byte PATCHes on a 14 MiB tail move about 200 bytes of tail, not 200 tails', async () => {
    const proxy = await tcpProxy(6379, { scheme: 'redis' });
    try {
      await withRelay(
        { UPLOAD_PART_SIZE: '15MiB' },
        async ({ relay }) => {
          const path = await createUpload(relay.url, 30 * MiB);
          expect((await patch(relay.url, path, 0, randomBytesOf(14 * MiB))).status).toBe(204);
          const from = proxy.sent() + proxy.received();
          for (let i = 0; i < 200; i += 1) {
            const offset = 14 * MiB + i;
            expect((await patch(relay.url, path, offset, Buffer.from([i & 0xff]))).offset).toBe(
              String(offset + 1),
            );
          }
          expect(proxy.sent() + proxy.received() - from).toBeLessThan(MiB);
        },
        { redisUrl: proxy.url },
      );
    } finally {
      await proxy.close();
    }
  });
});

test('metrics and log lines: a resumable upload is started, retried, completed and counted', async () => {
  await withRelay({}, async ({ relay }) => {
    emulator.faults.add({ target: 'part', part: 1, status: 503 });
    const data = randomBytesOf(6 * MiB);
    const result = await tusUpload(`${relay.url}/v1/uploads`, data, { headers: auth(TOKEN_A) });
    const metrics = (await request(relay.url).get('/metrics')).text;
    expect(metrics).toMatch(/relay_uploads_started_total\{route="resumable"\} 1/);
    expect(metrics).toMatch(/relay_uploads_completed_total\{route="resumable"\} 1/);
    expect(metrics).toMatch(/relay_upstream_retries_total\{reason="server_error"\} 1/);
    expect(metrics).toMatch(/relay_bytes_relayed_total 6291456/);
    expect(metrics).toMatch(/relay_bytes_buffered 0/);
    const logs = relay.logs();
    expect(logs.find((l) => l.event === 'upstream_retry')).toMatchObject({
      videoId: result.videoId,
    });
    expect(logs.find((l) => l.event === 'upload_finished')).toMatchObject({
      outcome: 'completed',
      route: 'resumable',
      videoId: result.videoId,
      bytes: data.length,
      parts: 2,
      retries: 1,
      principal: expect.stringMatching(/^token:/) as unknown,
    });
    // An interrupted request is logged at warn and counted, without ending the upload.
    emulator.faults.add({ target: 'part', status: 500, times: 100 });
    const path = await createUpload(relay.url, 10);
    expect((await patch(relay.url, path, 0, randomBytesOf(10))).status).toBe(502);
    const interrupted = relay.logs().find((l) => l.event === 'upload_interrupted');
    expect(interrupted).toMatchObject({ level: 40, code: 'upstream_failed' });
    expect((await request(relay.url).get('/metrics')).text).toMatch(
      /relay_upload_interruptions_total\{route="resumable",code="upstream_failed"\} 1/,
    );
  });
});

test('CORS_ORIGINS is honoured on /v1/uploads exactly as on /v1/videos', async () => {
  await withRelay({ CORS_ORIGINS: 'https://app.example' }, async ({ relay }) => {
    const preflight = (origin: string) =>
      request(relay.url)
        .options('/v1/uploads/abc')
        .set('Origin', origin)
        .set('Access-Control-Request-Method', 'PATCH')
        .set('Access-Control-Request-Headers', 'upload-offset,tus-resumable,content-type');
    const allowed = await preflight('https://app.example');
    expect(allowed.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(allowed.headers['access-control-allow-headers']).toMatch(/Upload-Offset/);
    const refused = await preflight('https://evil.example');
    expect(refused.headers['access-control-allow-origin']).toBeUndefined();
    const created = await request(relay.url)
      .post('/v1/uploads')
      .set('Origin', 'https://app.example')
      .set(auth(TOKEN_A))
      .set(TUS)
      .set('Upload-Length', '10');
    expect(created.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(created.headers['access-control-expose-headers']).toMatch(/Location/);
    const other = await request(relay.url)
      .post('/v1/uploads')
      .set('Origin', 'https://evil.example')
      .set(auth(TOKEN_A))
      .set(TUS)
      .set('Upload-Length', '10');
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
  });
});

test('tus errors are problem+json with the request id', async () => {
  await withRelay({}, async ({ relay }) => {
    const path = await createUpload(relay.url, 100);
    const wrong = await patch(relay.url, path, 7, randomBytesOf(3), TOKEN_A, {
      'X-Request-Id': 'my-request-1',
    });
    expect(wrong.status).toBe(409);
    expect(wrong.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(wrong.headers['tus-resumable']).toBe('1.0.0');
    expect(JSON.parse(wrong.body)).toMatchObject({
      code: 'offset_mismatch',
      requestId: 'my-request-1',
    });
    const version = await request(relay.url)
      .post('/v1/uploads')
      .set(auth(TOKEN_A))
      .set('Tus-Resumable', '0.2.2')
      .set('Upload-Length', '10');
    expect(version.status).toBe(412);
    expect(version.headers['tus-version']).toBe('1.0.0');
    expect(version.body).toMatchObject({ code: 'tus_version_unsupported' });
  });
});

test('Expect: 100-continue is answered before the PATCH body is sent', async () => {
  await withRelay({}, async ({ relay }) => {
    const path = await createUpload(relay.url, 5);
    const { port } = new URL(relay.url);
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({
        port: Number(port),
        host: '127.0.0.1',
        method: 'PATCH',
        path,
        headers: {
          ...auth(TOKEN_A),
          ...TUS,
          'Upload-Offset': '0',
          'Content-Type': 'application/offset+octet-stream',
          'Content-Length': '5',
          Expect: '100-continue',
        },
      });
      req.on('continue', () => req.end(Buffer.from('hello')));
      req.on('response', (res) => (res.resume(), resolve(res.statusCode!)));
      req.on('error', reject);
      req.flushHeaders();
    });
    expect(status).toBe(204);
    expect((await headOffset(relay.url, path)).offset).toBe(5);
  });
});

test('Redis cut mid-upload: 503 session_store_unavailable (problem+json), /readyz 503; once Redis is back the upload resumes and completes byte-exact', async () => {
  const proxy = await tcpProxy(6379, { scheme: 'redis' });
  try {
    await withRelay(
      {},
      async ({ relay }) => {
        const data = randomBytesOf(8 * MiB);
        const path = await createUpload(relay.url, data.length);
        expect((await patch(relay.url, path, 0, data.subarray(0, 3 * MiB))).status).toBe(204);
        proxy.cut();
        await eventually(async () => (await request(relay.url).get('/readyz')).status === 503);
        const during = await patch(relay.url, path, 3 * MiB, data.subarray(3 * MiB, 4 * MiB));
        expect(during.status).toBe(503);
        expect(during.headers['content-type']).toMatch(/^application\/problem\+json/);
        const problem = JSON.parse(during.body) as Record<string, unknown>;
        expect(problem).toMatchObject({ code: 'session_store_unavailable' });
        expect(JSON.stringify(problem)).not.toMatch(/ioredis|ECONN|Connection|stack/i);
        const head = await request(relay.url).head(path).set(auth(TOKEN_A)).set(TUS);
        expect(head.status).toBe(503);
        proxy.restore();
        await eventually(
          async () => (await request(relay.url).get('/readyz')).status === 200,
          10_000,
        );
        const offset = (await headOffset(relay.url, path)).offset;
        expect(offset).toBe(3 * MiB);
        const done = await patch(relay.url, path, offset, data.subarray(offset));
        expect(done.status).toBe(204);
        expect(inspectVideo(emulator, String(done.headers['upload-video-id']))).toMatchObject({
          completed: true,
          sha256: sha256(data),
        });
      },
      { redisUrl: proxy.url },
    );
  } finally {
    await proxy.close();
  }
});

test('a lost lock stops the write: 423, and nothing after the loss is saved', async () => {
  await withRelay({}, async ({ relay, redis, prefix }) => {
    const path = await createUpload(relay.url, 4 * MiB);
    const id = path.split('/').at(-1)!;
    const stalled = stalledBody(randomBytesOf(MiB));
    const answer = patch(relay.url, path, 0, stalled.body);
    await eventually(() => stalled.sent());
    await eventually(async () => (await redis.exists(`${prefix}lock:${id}`)) === 1);
    // As if our lease had lapsed and another instance had taken the upload.
    await redis.set(`${prefix}lock:${id}`, 'another-instance', 'PX', 10_000);
    const stopped = await answer;
    stalled.release();
    expect(stopped.status).toBe(423);
    expect(JSON.parse(stopped.body)).toMatchObject({ code: 'upload_locked' });
    expect((await headOffset(relay.url, path)).offset).toBe(0);
    await redis.del(`${prefix}lock:${id}`);
  });
});
