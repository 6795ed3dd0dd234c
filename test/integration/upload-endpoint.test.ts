/**
 * `POST /upload?token=` as api.video answers it, driven by api.video's own Node client pointed at
 * the relay (`baseUri`), and by hand for the forms that client does not send. Bytes are checked by
 * SHA-256 at the emulator.
 */
import { readFile, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import ApiVideoClient from '@api.video/nodejs-client';
import request from 'supertest';
import { mintUploadToken } from '../helpers/upload-tokens';
import { request as undiciRequest } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import { PROBLEM_TYPE_BASE } from '../../src/kernel/errors';
import type { UploadOutcome } from '../../src/engine/outcome';
import { MiB, randomBytesOf, sha256, tempFile, type TempFile } from '../helpers/data';
import { inspectVideo, startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { multipartAround } from '../helpers/upload';

const BACKEND = 'backend-token-0123456789';

let emulator: RunningEmulator;
let relay: TestRelay;
let file: TempFile;
const outcomes: UploadOutcome[] = [];
beforeAll(async () => {
  emulator = await startTestEmulator();
  relay = await startTestRelay(emulator, {
    env: { RELAY_API_TOKENS: BACKEND, CORS_ORIGINS: 'https://app.example.com' },
    outcomeSinks: [{ record: async (outcome) => void outcomes.push(outcome) }],
  });
  file = await tempFile(13 * MiB + 12345, 'holiday.mp4');
});
afterAll(async () => {
  await relay.close();
  await emulator.close();
  await file.remove();
});

const mint = (body: object = {}) => mintUploadToken(relay.url, BACKEND, body);

const apivideo = (chunkSize = 50 * MiB) => new ApiVideoClient({ baseUri: relay.url, chunkSize });

/** One chunk as api.video's clients send it: a form with the file (and maybe videoId). */
async function sendChunk(
  token: string,
  data: Buffer,
  options: { range?: string; videoId?: string; videoIdAfter?: string; fieldName?: string } = {},
) {
  const form = multipartAround(Readable.from([data]), data.length, {
    fields: options.videoId ? [['videoId', options.videoId]] : [],
    after: options.videoIdAfter ? [['videoId', options.videoIdAfter]] : [],
    fieldName: options.fieldName ?? 'file',
    filename: 'clip.mp4',
  });
  const res = await undiciRequest(`${relay.url}/upload?token=${encodeURIComponent(token)}`, {
    method: 'POST',
    headers: {
      'content-type': form.contentType,
      'content-length': String(form.length),
      ...(options.range ? { 'content-range': options.range } : {}),
    },
    body: form.body,
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    body: JSON.parse(text) as Record<string, unknown>,
  };
}

async function tokenState(id: string) {
  const res = await request(relay.url)
    .get(`/v1/upload-tokens/${id}`)
    .set('Authorization', `Bearer ${BACKEND}`);
  return res.body as Record<string, unknown>;
}

describe('the official Node client (`uploadWithUploadToken`, baseUri = the relay)', () => {
  test('a whole file: byte-exact, and the token’s title and metadata win', async () => {
    const { token, id } = await mint({ title: 'Bound', metadata: { userId: '42' } });
    const video = await apivideo().videos.uploadWithUploadToken(token, file.path);
    expect(video.title).toBe('Bound');
    const seen = inspectVideo(emulator, video.videoId);
    expect(seen).toMatchObject({ completed: true, size: file.size, sha256: file.sha256 });
    expect(seen.input).toMatchObject({
      title: 'Bound',
      metadata: expect.arrayContaining([{ key: 'userId', value: '42' }]),
    });
    expect(await tokenState(id)).toMatchObject({ uses: 1, status: 'used_up' });
    // Single use: a second upload with it is refused, in api.video's problem shape.
    await expect(apivideo().videos.uploadWithUploadToken(token, file.path)).rejects.toMatchObject({
      problemDetails: {
        status: 401,
        type: `${PROBLEM_TYPE_BASE}upload_token_used_up`,
        title: 'The upload token has no uses left',
      },
    });
    expect(relay.rawLogs()).not.toContain(token);
  });

  test('in 5 MiB chunks (part n/m, no videoId on later chunks): one part per chunk, byte-exact', async () => {
    const { token, id } = await mint();
    const video = await apivideo(5 * MiB).videos.uploadWithUploadToken(token, file.path);
    const seen = inspectVideo(emulator, video.videoId);
    expect(seen).toMatchObject({ completed: true, size: file.size, sha256: file.sha256 });
    expect(seen.parts.map((p) => [p.number, p.size])).toEqual([
      [1, 5 * MiB],
      [2, 5 * MiB],
      [3, file.size - 10 * MiB],
    ]);
    expect(seen.input).toMatchObject({ title: 'holiday' });
    expect(await tokenState(id)).toMatchObject({ uses: 1 });
  });

  test('a progressive session (part n/*, videoId after the file, then n/n), byte-exact', async () => {
    const { token } = await mint({ title: 'progressive' });
    const bytes = await readFile(file.path);
    const dir = await mkdtemp(join(tmpdir(), 'parts-'));
    try {
      const paths: string[] = [];
      for (let offset = 0, n = 1; offset < bytes.length; offset += 6 * MiB, n++) {
        const path = join(dir, `part${n}.bin`);
        await writeFile(path, bytes.subarray(offset, offset + 6 * MiB));
        paths.push(path);
      }
      const session = apivideo().videos.createUploadWithUploadTokenProgressiveSession(token);
      for (const path of paths.slice(0, -1)) await session.uploadPart(path);
      const video = await session.uploadLastPart(paths.at(-1)!);
      const seen = inspectVideo(emulator, video.videoId);
      expect(seen).toMatchObject({ completed: true, size: file.size, sha256: file.sha256 });
      expect(seen.parts.map((p) => p.number)).toEqual([1, 2, 3]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('by hand', () => {
  test('bytes a-b/size chunks map to part numbers on the first chunk’s grid', async () => {
    const { token } = await mint();
    const data = randomBytesOf(11 * MiB + 3);
    const size = data.length;
    const ranges = [
      [0, 5 * MiB - 1],
      [5 * MiB, 10 * MiB - 1],
      [10 * MiB, size - 1],
    ];
    let videoId: string | undefined;
    for (const [from, to] of ranges) {
      const answer = await sendChunk(token, data.subarray(from, to! + 1), {
        range: `bytes ${from}-${to}/${size}`,
        videoId,
        fieldName: 'clip.mp4',
      });
      expect(answer.status).toBe(201);
      videoId = answer.body.videoId as string;
    }
    const seen = inspectVideo(emulator, videoId!);
    expect(seen).toMatchObject({ completed: true, size, sha256: sha256(data) });
    expect(seen.parts.map((p) => p.label)).toEqual(['part 1/*', 'part 2/*', 'part 3/3']);
  });

  test('a chunk naming another video is refused, before or after the file; that video is untouched', async () => {
    const other = await relay.client.createVideo({ title: 'not yours' });
    const { token } = await mint({ maxUses: 2 });
    const data = randomBytesOf(5 * MiB);
    const first = await sendChunk(token, data, { range: 'part 1/*' });
    expect(first.status).toBe(201);
    const mine = first.body.videoId as string;
    const before = await sendChunk(token, data, { range: 'part 2/*', videoId: other.videoId });
    expect(before.status).toBe(403);
    expect(before.body).toMatchObject({
      status: 403,
      code: 'upload_token_video_mismatch',
      type: `${PROBLEM_TYPE_BASE}upload_token_video_mismatch`,
      title: 'Not a video of this upload token',
    });
    expect(before.headers['content-type']).toMatch(/^application\/problem\+json/);
    // After the file, the chunk is already on its way: it can only have gone to the token's own
    // video, and the answer still refuses the foreign id.
    const after = await sendChunk(token, data, { range: 'part 2/*', videoIdAfter: other.videoId });
    expect(after.status).toBe(403);
    expect(inspectVideo(emulator, other.videoId)).toMatchObject({ completed: false, parts: [] });
    // A video id the client made up is as foreign as a real one.
    expect((await sendChunk(token, data, { videoId: 'viMadeUp0000000000' })).status).toBe(403);
    // The token's own upload still finishes.
    const last = await sendChunk(token, Buffer.from('end'), { range: 'part 3/3', videoId: mine });
    expect(last.status).toBe(201);
    expect(inspectVideo(emulator, mine)).toMatchObject({
      completed: true,
      size: 10 * MiB + 3,
      sha256: sha256([data, data, Buffer.from('end')]),
    });
  });

  test('revoked mid-upload: the next chunk is refused', async () => {
    const data = randomBytesOf(5 * MiB);
    const revoked = await mint();
    expect((await sendChunk(revoked.token, data, { range: 'part 1/2' })).status).toBe(201);
    await request(relay.url)
      .delete(`/v1/upload-tokens/${revoked.id}`)
      .set('Authorization', `Bearer ${BACKEND}`)
      .expect(204);
    const refused = await sendChunk(revoked.token, Buffer.from('x'), { range: 'part 2/2' });
    expect(refused.status).toBe(401);
    expect(refused.body).toMatchObject({ code: 'upload_token_revoked', status: 401 });
  });

  test('unknown, missing and malformed tokens; a later chunk with no upload begun; a bad range', async () => {
    const unknown = await sendChunk(`to_${'B'.repeat(32)}`, Buffer.from('x'));
    expect(unknown.body).toMatchObject({ status: 401, code: 'upload_token_unknown' });
    const missing = await request(relay.url)
      .post('/upload')
      .attach('file', Buffer.from('x'), 'a.mp4');
    expect(missing.body).toMatchObject({ status: 401, code: 'upload_token_unknown' });
    const { token, id } = await mint();
    const orphan = await sendChunk(token, Buffer.from('x'), { range: 'part 2/3' });
    expect(orphan.body).toMatchObject({ status: 400, code: 'upload_chunk_invalid' });
    const bad = await sendChunk(token, Buffer.from('x'), { range: 'part 3/2' });
    expect(bad.body).toMatchObject({ status: 400, code: 'upload_chunk_invalid' });
    const noFile = await request(relay.url)
      .post(`/upload?token=${token}`)
      .field('videoId', 'vi4blUQJFrYWbaG44NChkH27');
    expect(noFile.body).toMatchObject({
      status: 400,
      type: 'https://docs.api.video/reference/uploaded-file-no-file',
    });
    expect(await tokenState(id)).toMatchObject({ uses: 0, status: 'active' });
  });

  test('a file over the token’s maxFileSize is refused, and gives its use back', async () => {
    const { token, id } = await mint({ maxFileSize: 1 * MiB });
    const answer = await sendChunk(token, randomBytesOf(2 * MiB));
    expect(answer.body).toMatchObject({ status: 413, code: 'file_too_large' });
    expect(await tokenState(id)).toMatchObject({ uses: 0 });
    const fits = await sendChunk(token, randomBytesOf(MiB - 10));
    expect(fits.status).toBe(201);
  });

  test('a first chunk that api.video refuses leaves no video behind and gives the use back', async () => {
    const { token, id } = await mint();
    // Too small for a part that is not the last: api.video refuses it; the relay passes its problem on.
    const answer = await sendChunk(token, Buffer.from('tiny'), { range: 'part 1/*' });
    expect(answer.status).toBe(400);
    expect(String(answer.body.type)).toMatch(/^https:\/\/docs\.api\.video\/reference\//);
    expect(await tokenState(id)).toMatchObject({ uses: 0 });
    const retry = await sendChunk(token, randomBytesOf(100));
    expect(retry.status).toBe(201);
  });

  test('CORS: a browser on an allowed origin may send Content-Range and the uploader’s headers', async () => {
    const res = await request(relay.url)
      .options('/upload?token=x')
      .set('Origin', 'https://app.example.com')
      .set('Access-Control-Request-Method', 'POST')
      .set('Access-Control-Request-Headers', 'content-range,av-origin-client');
    expect(res.status).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example.com');
    expect(res.headers['access-control-allow-headers']).toMatch(/Content-Range/);
    expect(res.headers['access-control-allow-headers']).toMatch(/AV-Origin-Client/);
  });

  test('one outcome per upload, from the engine: completed after the last chunk, failed for a first chunk refused', async () => {
    const { token, id } = await mint({ title: 'outcomes', metadata: { userId: '7' } });
    const data = randomBytesOf(5 * MiB);
    const first = await sendChunk(token, data, { range: 'part 1/2' });
    const videoId = first.body.videoId as string;
    expect(outcomes.filter((o) => o.videoId === videoId)).toEqual([]);
    await sendChunk(token, Buffer.from('end'), { range: 'part 2/2', videoId });
    const mine = outcomes.filter((o) => o.videoId === videoId);
    expect(mine).toEqual([
      expect.objectContaining({
        kind: 'completed',
        route: 'upload-token',
        principal: expect.stringMatching(/^token:/),
        uploadTokenId: id,
        title: 'outcomes',
        metadata: [{ key: 'userId', value: '7' }],
        bytesAcknowledged: 5 * MiB + 3,
        parts: 2,
      }),
    ]);
    const refused = await mint();
    const before = outcomes.length;
    const tiny = await sendChunk(refused.token, Buffer.from('tiny'), { range: 'part 1/*' });
    expect(tiny.status).toBe(400);
    expect(outcomes.slice(before)).toEqual([
      expect.objectContaining({
        kind: 'failed',
        route: 'upload-token',
        uploadTokenId: refused.id,
        code: 'upstream_failed',
        containerDeleted: true,
      }),
    ]);
    expect(inspectVideo(emulator, outcomes.at(-1)!.videoId!).deleted).toBe(true);
  });

  test('a client that stops mid-chunk is cut off after UPLOAD_IDLE_TIMEOUT_MS; its first chunk leaves nothing', async () => {
    const idleRelay = await startTestRelay(emulator, {
      env: { RELAY_API_TOKENS: BACKEND, UPLOAD_IDLE_TIMEOUT_MS: '300' },
    });
    const hold = new PassThrough();
    try {
      const minted = await request(idleRelay.url)
        .post('/v1/upload-tokens')
        .set('Authorization', `Bearer ${BACKEND}`)
        .send({});
      const size = 6 * MiB;
      const form = multipartAround(hold, size, { filename: 'clip.mp4' });
      const answer = undiciRequest(`${idleRelay.url}/upload?token=${minted.body.token}`, {
        method: 'POST',
        headers: {
          'content-type': form.contentType,
          'content-length': String(form.length),
          'content-range': 'part 1/*',
        },
        body: form.body,
      });
      hold.write(randomBytesOf(MiB)); // then nothing more
      const res = await answer;
      const body = (await res.body.json()) as Record<string, unknown>;
      expect([res.statusCode, body.code]).toEqual([408, 'upload_idle_timeout']);
      const state = await request(idleRelay.url)
        .get(`/v1/upload-tokens/${minted.body.id}`)
        .set('Authorization', `Bearer ${BACKEND}`);
      expect(state.body).toMatchObject({ uses: 0 });
      const failed = idleRelay.logs().find((l) => l.event === 'upload_finished');
      expect(failed).toMatchObject({ outcome: 'upload_idle_timeout', containerDeleted: true });
    } finally {
      hold.destroy();
      await idleRelay.close();
    }
  });
});
