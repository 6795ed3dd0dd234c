/**
 * The attack catalogue, continued (issue #24 point 6): limits found late. A size a client
 * declares is held against the upload token's maxFileSize (and UPLOAD_MAX_FILE_SIZE) when it is
 * declared, not once the bytes pass it, with tokens and sessions in memory and in Redis.
 */
import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import request from 'supertest';
import type { RunningEmulator } from '../../src/emulator/app';
import { MiB, randomBytesOf } from '../helpers/data';
import { startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import {
  TOKEN_A,
  TOKEN_B,
  TUS,
  auth,
  patch,
  relayWithRedis,
  type RedisRelay,
} from '../helpers/resumable';
import { multipartAround } from '../helpers/upload';
import { mintUploadToken } from '../helpers/upload-tokens';

let emulator: RunningEmulator;
beforeAll(async () => {
  emulator = await startTestEmulator();
});
afterAll(async () => {
  await emulator?.close();
});

type Store = 'memory' | 'redis';

/** A relay with its sessions and tokens in memory or in Redis (its own key prefix). */
async function withRelay(
  store: Store,
  env: Record<string, string>,
  run: (relay: TestRelay, redis?: RedisRelay) => Promise<void>,
): Promise<void> {
  const settings = { RELAY_API_TOKENS: `${TOKEN_A},${TOKEN_B}`, LOG_LEVEL: 'info', ...env };
  if (store === 'redis') {
    const r = await relayWithRedis(emulator, settings);
    try {
      await run(r.relay, r);
    } finally {
      await r.close();
    }
    return;
  }
  const relay = await startTestRelay(emulator, { env: settings });
  try {
    await run(relay);
  } finally {
    await relay.close();
  }
}

async function usesOf(url: string, id: string): Promise<number> {
  const res = await request(url).get(`/v1/upload-tokens/${id}`).set(auth(TOKEN_A));
  return res.body.uses as number;
}

describe.each(['memory', 'redis'] as const)('declared sizes (%s)', (store) => {
  test('tus: an Upload-Length over the token’s maxFileSize is refused at creation; nothing is created', async () => {
    await withRelay(store, {}, async (relay) => {
      const { token, id } = await mintUploadToken(relay.url, TOKEN_A, { maxFileSize: 5000 });
      const videos = emulator.videos.all().length;
      const res = await request(relay.url)
        .post('/v1/uploads')
        .set(auth(token))
        .set(TUS)
        .set('Upload-Length', '5001');
      expect([res.status, res.body.code]).toEqual([413, 'file_too_large']);
      expect(res.headers.location).toBeUndefined();
      expect(emulator.videos.all().length).toBe(videos);
      expect(await usesOf(relay.url, id)).toBe(0);
    });
  });

  test('tus: a deferred length over the token’s maxFileSize is refused on the PATCH that declares it, before its bytes count', async () => {
    await withRelay(store, {}, async (relay) => {
      const { token } = await mintUploadToken(relay.url, TOKEN_A, { maxFileSize: 5000 });
      const videos = emulator.videos.all().length;
      const created = await request(relay.url)
        .post('/v1/uploads')
        .set(auth(token))
        .set(TUS)
        .set('Upload-Defer-Length', '1');
      expect(created.status).toBe(201);
      const path = created.headers.location!;
      const declared = await patch(relay.url, path, 0, randomBytesOf(1000), token, {
        'Upload-Length': '5001',
      });
      expect(declared.status).toBe(413);
      expect(JSON.parse(declared.body)).toMatchObject({ code: 'file_too_large' });
      expect(emulator.videos.all().length).toBe(videos);
      // Nothing was taken: the upload is where it was, its length still to be declared.
      const head = await request(relay.url).head(path).set(auth(token)).set(TUS);
      expect(head.headers['upload-offset']).toBe('0');
      expect(head.headers['upload-defer-length']).toBe('1');
      // A length within the limit is taken, and the upload completes.
      const done = await patch(relay.url, path, 0, randomBytesOf(5000), token, {
        'Upload-Length': '5000',
      });
      expect(done.status).toBe(204);
      expect(done.headers['upload-video-id']).toMatch(/^vi/);
    });
  });

  test('tus: a deferred length over UPLOAD_MAX_FILE_SIZE is refused on the PATCH that declares it', async () => {
    await withRelay(store, { UPLOAD_MAX_FILE_SIZE: '1MiB' }, async (relay) => {
      const created = await request(relay.url)
        .post('/v1/uploads')
        .set(auth(TOKEN_A))
        .set(TUS)
        .set('Upload-Defer-Length', '1');
      const videos = emulator.videos.all().length;
      const declared = await patch(
        relay.url,
        created.headers.location!,
        0,
        randomBytesOf(10),
        TOKEN_A,
        {
          'Upload-Length': String(MiB + 1),
        },
      );
      expect(declared.status).toBe(413);
      expect(emulator.videos.all().length).toBe(videos);
    });
  });

  test('POST /upload?token=: a Content-Range size over the token’s maxFileSize is refused before the body is asked for', async () => {
    await withRelay(store, {}, async (relay) => {
      const { token, id } = await mintUploadToken(relay.url, TOKEN_A, { maxFileSize: 5000 });
      const videos = emulator.videos.all().length;
      const data = randomBytesOf(1000);
      const form = multipartAround(Readable.from([data]), data.length, { filename: 'clip.mp4' });
      const { port } = new URL(relay.url);
      // Expect: 100-continue: a refusal at declaration answers without asking for the body.
      const answer = await new Promise<{ status: number; continued: boolean }>(
        (resolve, reject) => {
          let continued = false;
          const req = httpRequest({
            host: '127.0.0.1',
            port: Number(port),
            method: 'POST',
            path: `/upload?token=${token}`,
            headers: {
              'Content-Type': form.contentType,
              'Content-Length': String(form.length),
              'Content-Range': 'bytes 0-999/5001',
              Expect: '100-continue',
            },
            agent: false,
          });
          req.on('continue', () => {
            continued = true;
            form.body.pipe(req);
          });
          req.on('response', (res) => {
            res.resume();
            resolve({ status: res.statusCode!, continued });
            req.destroy();
          });
          req.on('error', reject);
          req.flushHeaders();
        },
      );
      expect(answer).toEqual({ status: 413, continued: false });
      expect(emulator.videos.all().length).toBe(videos);
      expect(await usesOf(relay.url, id)).toBe(0);
    });
  });
});
