/**
 * Input the attack on the running relay found unbounded or mishandled: a large JSON body (was a
 * 500 with a stack in the logs), a chunked creation-with-upload (its bytes were dropped), tus
 * metadata with thousands of tags or a path in `playerId`.
 */
import { connect } from 'node:net';
import request from 'supertest';
import { request as undici } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import { randomBytesOf, sha256 } from '../helpers/data';
import { inspectVideo, startTestEmulator } from '../helpers/emulator';
import { TUS, auth } from '../helpers/resumable';
import { startTestRelay, type TestRelay } from '../helpers/relay';

const TOKEN = 'bounded-input-token-0123456789';
let emulator: RunningEmulator;
let relay: TestRelay;
beforeAll(async () => {
  emulator = await startTestEmulator();
  relay = await startTestRelay(emulator, {
    env: { RELAY_API_TOKENS: TOKEN, LOG_LEVEL: 'info' },
  });
});
afterAll(async () => {
  await relay.close();
  await emulator.close();
});

test('a JSON body over 64 KiB when minting: 413 body_too_large, and no error line with a stack', async () => {
  const res = await request(relay.url)
    .post('/v1/upload-tokens')
    .set(auth(TOKEN))
    .set('Content-Type', 'application/json')
    .send(JSON.stringify({ title: 'x'.repeat(100 * 1024) }));
  expect(res.status).toBe(413);
  expect(res.body).toMatchObject({
    code: 'body_too_large',
    requestId: res.headers['x-request-id'],
  });
  expect(relay.logs().some((l) => l.level === 50)).toBe(false);
});

test('creation-with-upload sent chunked: its bytes are taken, not dropped', async () => {
  const data = randomBytesOf(1000);
  const res = await undici(`${relay.url}/v1/uploads`, {
    method: 'POST',
    headers: {
      ...auth(TOKEN),
      ...TUS,
      'Upload-Length': '1000',
      'Content-Type': 'application/offset+octet-stream',
    },
    body: (async function* () {
      yield data.subarray(0, 500);
      yield data.subarray(500);
    })() as unknown as Buffer,
  });
  await res.body.dump();
  expect(res.statusCode).toBe(201);
  expect(res.headers['upload-offset']).toBe('1000');
  const videoId = String(res.headers['upload-video-id']);
  expect(inspectVideo(emulator, videoId)).toMatchObject({ completed: true, sha256: sha256(data) });
});

test.each([
  [
    '2000 tags',
    `tags ${Buffer.from(Array.from({ length: 2000 }, (_, i) => `t${i}`).join(',')).toString('base64')}`,
  ],
  ['a tag of 300 characters', `tags ${Buffer.from('x'.repeat(300)).toString('base64')}`],
  ['a path as playerId', `playerId ${Buffer.from('../../videos').toString('base64')}`],
])('tus metadata with %s: 400 invalid_field, nothing created', async (_what, metadata) => {
  const before = emulator.videos.all().length;
  const res = await request(relay.url)
    .post('/v1/uploads')
    .set(auth(TOKEN))
    .set(TUS)
    .set('Upload-Length', '10')
    .set('Upload-Metadata', metadata);
  expect(res.status).toBe(400);
  expect(res.body).toMatchObject({ code: 'invalid_field' });
  expect(emulator.videos.all().length).toBe(before);
});

/** Sends raw bytes, reads the whole answer until the server closes. */
function rawExchange(text: string): Promise<string> {
  const { port } = new URL(relay.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    socket.on('close', () => resolve(answer));
    socket.on('error', reject);
    socket.end(text);
  });
}

test.each([
  [
    'headers over 16 KiB',
    `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    431,
    'headers_too_large',
  ],
  [
    'a Content-Length that is not a number',
    'POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n',
    400,
    'invalid_request',
  ],
])(
  '%s: problem+json with a request id, not Node’s bare line',
  async (_what, text, status, code) => {
    const answer = await rawExchange(text);
    expect(answer).toMatch(new RegExp(`^HTTP/1.1 ${status} `));
    expect(answer).toMatch(/content-type: application\/problem\+json/i);
    const id = /x-request-id: (\S+)/i.exec(answer)?.[1];
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<
      string,
      unknown
    >;
    expect(body).toMatchObject({ status, code, requestId: id });
  },
);
