/**
 * The attack catalogue, continued: what an outside attack on the running relay found on
 * api.video's own upload protocol (`POST /upload?token=`) and around it. Each row was seen working
 * before its fix.
 */
import { Readable } from 'node:stream';
import request from 'supertest';
import { mintUploadToken } from '../helpers/upload-tokens';
import { request as undiciRequest } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import type { UploadOutcome } from '../../src/engine/outcome';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { inspectVideo, startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { multipartAround } from '../helpers/upload';

const BACKEND = 'backend-token-0123456789';
let emulator: RunningEmulator;
let relay: TestRelay;
const outcomes: UploadOutcome[] = [];
beforeAll(async () => {
  emulator = await startTestEmulator();
  relay = await startTestRelay(emulator, {
    env: { RELAY_API_TOKENS: BACKEND, LOG_LEVEL: 'info' },
    outcomeSinks: [{ record: async (outcome) => void outcomes.push(outcome) }],
  });
});
afterAll(async () => {
  await relay.close();
  await emulator.close();
});

const mint = (body: object = {}) => mintUploadToken(relay.url, BACKEND, body);

async function sendChunk(token: string, data: Buffer, range: string, query = '') {
  const form = multipartAround(Readable.from([data]), data.length, {
    fieldName: 'file',
    filename: 'clip.mp4',
  });
  const res = await undiciRequest(
    `${relay.url}/upload?token=${query || encodeURIComponent(token)}`,
    {
      method: 'POST',
      headers: {
        'content-type': form.contentType,
        'content-length': String(form.length),
        'content-range': range,
      },
      body: form.body,
    },
  );
  const text = await res.body.text();
  return { status: res.statusCode, body: JSON.parse(text) as Record<string, unknown> };
}

const P = 5 * MiB;

test('a last chunk before an earlier one: refused, nothing reported complete, and the upload can still finish', async () => {
  const { token, id } = await mint();
  const parts = [randomBytesOf(P), randomBytesOf(P), randomBytesOf(1000)];
  const first = await sendChunk(token, parts[0]!, 'part 1/*');
  expect(first.status).toBe(201);
  const videoId = first.body.videoId as string;
  const early = await sendChunk(token, parts[2]!, 'part 3/3');
  expect(early.status).toBe(400);
  expect(inspectVideo(emulator, videoId).completed).toBe(false);
  expect(outcomes.some((o) => o.uploadTokenId === id && o.kind === 'completed')).toBe(false);
  expect((await request(relay.url).get('/metrics')).text).not.toMatch(
    /relay_uploads_completed_total\{route="upload-token"\}/,
  );
  expect((await sendChunk(token, parts[1]!, 'part 2/*')).status).toBe(201);
  expect((await sendChunk(token, parts[2]!, 'part 3/3')).status).toBe(201);
  expect(inspectVideo(emulator, videoId)).toMatchObject({
    completed: true,
    sha256: sha256(parts),
  });
});

test('the byte form of the same gap: bytes 0-…, then the last range, is refused', async () => {
  const { token } = await mint();
  const size = 3 * P;
  const first = await sendChunk(token, randomBytesOf(P), `bytes 0-${P - 1}/${size}`);
  expect(first.status).toBe(201);
  const last = await sendChunk(token, randomBytesOf(P), `bytes ${2 * P}-${size - 1}/${size}`);
  expect(last.status).toBe(400);
  expect(inspectVideo(emulator, first.body.videoId as string).completed).toBe(false);
});

test('parallel chunks cannot pass the token’s maxFileSize together', async () => {
  const { token } = await mint({ maxFileSize: 11 * MiB });
  const first = await sendChunk(token, randomBytesOf(P), 'part 1/*');
  expect(first.status).toBe(201);
  const answers = await Promise.all(
    [2, 3, 4].map((n) => sendChunk(token, randomBytesOf(P), `part ${n}/*`)),
  );
  const accepted = answers.filter((a) => a.status === 201).length;
  // 5 MiB already in: only one more 5 MiB part fits under 11 MiB.
  expect(accepted).toBe(1);
  expect(answers.filter((a) => a.status === 413)).toHaveLength(2);
});

test('a chunk sent again (its answer lost) is not counted twice: the upload stays within its size and completes', async () => {
  const { token } = await mint({ maxFileSize: 2 * P });
  const a = randomBytesOf(P);
  const b = randomBytesOf(P);
  const size = 2 * P;
  const first = await sendChunk(token, a, `bytes 0-${P - 1}/${size}`);
  expect((await sendChunk(token, a, `bytes 0-${P - 1}/${size}`)).status).toBe(201);
  const last = await sendChunk(token, b, `bytes ${P}-${size - 1}/${size}`);
  expect(last.status).toBe(201);
  expect(inspectVideo(emulator, first.body.videoId as string)).toMatchObject({
    completed: true,
    sha256: sha256([a, b]),
  });
  const done = outcomes.find((o) => o.videoId === first.body.videoId && o.kind === 'completed');
  expect(done?.bytesAcknowledged).toBe(size);
});

test.each([
  ['percent-encoded first letter', (t: string) => `%74${t.slice(1)}`],
  ['percent-encoded second letter', (t: string) => `t%6F${t.slice(2)}`],
  ['plain', (t: string) => t],
])('the token never reaches the logs (%s)', async (_what, encode) => {
  const { token } = await mint();
  const answer = await sendChunk(token, randomBytesOf(10), 'part 1/1', encode(token));
  expect(answer.status).toBe(201);
  const secret = token.slice(3);
  expect(relay.rawLogs()).not.toContain(secret);
});
