/**
 * Issue #24, 500s from client input: a chunk shorter than its `Content-Range` on
 * `POST /upload?token=` was a 500 with a stack trace in the log.
 */
import { Readable } from 'node:stream';
import { request as undici } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import { inspectVideo, startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { multipartAround } from '../helpers/upload';
import { mintUploadToken } from '../helpers/upload-tokens';

const BACKEND = 'client-input-token-0123456789';
let emulator: RunningEmulator;
let relay: TestRelay;
beforeAll(async () => {
  emulator = await startTestEmulator();
  relay = await startTestRelay(emulator, {
    env: { RELAY_API_TOKENS: BACKEND, LOG_LEVEL: 'info' },
  });
});
afterAll(async () => {
  await relay.close();
  await emulator.close();
});

const errorLines = () => relay.logs().filter((l) => (l.level as number) >= 50);

test('a chunk shorter than its Content-Range: 400 upload_chunk_invalid, no error line, and the token can retry', async () => {
  const { token } = await mintUploadToken(relay.url, BACKEND);
  const send = async (bytes: number) => {
    const data = Buffer.alloc(bytes, 7);
    const form = multipartAround(Readable.from([data]), bytes, { filename: 'clip.mp4' });
    const res = await undici(`${relay.url}/upload?token=${token}`, {
      method: 'POST',
      headers: {
        'content-type': form.contentType,
        'content-length': String(form.length),
        'content-range': 'bytes 0-99/100',
      },
      body: form.body,
    });
    return {
      status: res.statusCode,
      id: res.headers['x-request-id'],
      type: res.headers['content-type'],
      body: (await res.body.json()) as Record<string, unknown>,
    };
  };
  const before = errorLines().length;
  const short = await send(50);
  expect(short.status).toBe(400);
  expect(short.type).toMatch(/^application\/problem\+json/);
  expect(short.body).toMatchObject({ code: 'upload_chunk_invalid', requestId: short.id });
  expect(errorLines().length).toBe(before);
  expect(emulator.videos.live().length).toBe(0);
  // The single use was given back: the same chunk, whole, starts the upload.
  const whole = await send(100);
  expect(whole.status).toBe(201);
  expect(inspectVideo(emulator, whole.body.videoId as string)).toMatchObject({ completed: true });
});
