/**
 * Upload tokens: minted by a backend (a static token here), spent by a client on the relay's own
 * upload routes. The relay keeps them in memory here, on a clock the tests move.
 */
import { Readable } from 'node:stream';
import request from 'supertest';
import { mintUploadToken } from '../helpers/upload-tokens';
import type { RunningEmulator } from '../../src/emulator/app';
import { MemoryUploadTokenStore } from '../../src/stores/upload-token-store';
import { UploadTokens } from '../../src/upload-tokens/tokens';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { inspectVideo, startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { tusUpload } from '../helpers/tus';
import { uploadMultipart, uploadRaw } from '../helpers/upload';

const ALICE = 'alice-token-0123456789';
const BOB = 'bob-token-0123456789abc';

let emulator: RunningEmulator;
let relay: TestRelay;
let clock = Date.now();
beforeAll(async () => {
  emulator = await startTestEmulator();
  relay = await startTestRelay(emulator, {
    env: { RELAY_API_TOKENS: `${ALICE},${BOB}` },
    uploadTokens: new UploadTokens(new MemoryUploadTokenStore(() => clock), () => clock),
  });
});
afterAll(async () => {
  await relay.close();
  await emulator.close();
});

const mint = (body: object = {}, as = ALICE) => mintUploadToken(relay.url, as, body);

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe('minting', () => {
  test('a backend mints an unguessable token with the defaults; it is shown once, never stored', async () => {
    const before = clock;
    const res = await request(relay.url)
      .post('/v1/upload-tokens')
      .set('Authorization', `Bearer ${ALICE}`)
      .send({ title: 'Holiday', metadata: { userId: '42' } });
    expect(res.status).toBe(201);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toEqual({
      token: expect.stringMatching(/^to_[A-Za-z0-9_-]{32}$/),
      id: expect.stringMatching(/^utk_[A-Za-z0-9_-]{16}$/),
      status: 'active',
      createdAt: new Date(before).toISOString(),
      expiresAt: new Date(before + 3600_000).toISOString(),
      ttl: 3600,
      maxUses: 1,
      uses: 0,
      remainingUses: 1,
      title: 'Holiday',
      metadata: [{ key: 'userId', value: '42' }],
    });
    expect(res.headers.location).toBe(`/v1/upload-tokens/${res.body.id}`);
    const other = await mint();
    expect(other.token).not.toBe(res.body.token);
    // Readable by its id too, and the token itself never comes back after minting.
    const byId = await request(relay.url)
      .get(`/v1/upload-tokens/${res.body.id}`)
      .set('Authorization', `Bearer ${ALICE}`);
    expect(byId.status).toBe(200);
    expect(byId.body.token).toBeUndefined();
    expect(byId.body.id).toBe(res.body.id);
  });

  test('minting needs the relay’s own credentials: none, or an upload token, is refused', async () => {
    const none = await request(relay.url).post('/v1/upload-tokens').send({});
    expect(none.status).toBe(401);
    expect(none.body.code).toBe('unauthorized');
    const { token } = await mint({ maxUses: 5 });
    const byToken = await request(relay.url)
      .post('/v1/upload-tokens')
      .set('Authorization', `Bearer ${token}`)
      .send({});
    expect(byToken.status).toBe(401);
    expect(byToken.body.code).toBe('unauthorized');
  });

  test('every bad field is reported at once, as problem+json; unknown fields are refused', async () => {
    const res = await request(relay.url)
      .post('/v1/upload-tokens')
      .set('Authorization', `Bearer ${ALICE}`)
      .send({
        ttl: 0,
        maxUses: 1001,
        maxFileSize: -1,
        title: 'x'.repeat(257),
        tags: Array.from({ length: 33 }, (_, i) => `t${i}`),
        metadata: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])),
        playerId: '../../admin',
        public: 'yes',
        maxUse: 3,
      });
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body.code).toBe('invalid_field');
    for (const name of [
      'maxUse',
      'ttl',
      'maxUses',
      'maxFileSize',
      'title',
      'tags',
      'metadata',
      'playerId',
      'public',
    ])
      expect(res.body.detail).toContain(`"${name}"`);
    for (const body of [
      { ttl: 30 * 24 * 3600 + 1 },
      { ttl: 1.5 },
      { metadata: [{ key: 'a', value: 1 }] },
      { metadata: { a: 'x'.repeat(1025) } },
      { tags: ['x'.repeat(257)] },
      { videoId: 'vi123', title: 'no' },
      { videoId: 'vi123', maxUses: 2 },
      { description: 'x'.repeat(4097) },
    ]) {
      const r = await request(relay.url)
        .post('/v1/upload-tokens')
        .set('Authorization', `Bearer ${ALICE}`)
        .send(body);
      expect([r.status, r.body.code, body]).toEqual([400, 'invalid_field', body]);
    }
    const notObject = await request(relay.url)
      .post('/v1/upload-tokens')
      .set('Authorization', `Bearer ${ALICE}`)
      .set('Content-Type', 'application/json')
      .send('[1,2]');
    expect(notObject.body.code).toBe('invalid_request');
  });
});

describe('uploading with a token on POST /v1/videos', () => {
  test('the token’s title and metadata win over the client’s; the bytes arrive intact', async () => {
    const { token, id } = await mint({
      title: 'Bound title',
      metadata: { userId: '42' },
      tags: ['bound'],
    });
    const answer = await uploadMultipart(relay.url, 6 * MiB + 7, {
      headers: bearer(token),
      fields: [
        ['title', 'Client title'],
        ['metadata', JSON.stringify({ userId: '1', admin: 'true' })],
        ['tags', 'client'],
        ['description', 'from the client'],
      ],
    });
    expect(answer.status).toBe(201);
    const videoId = answer.body.videoId as string;
    const seen = inspectVideo(emulator, videoId);
    expect(seen).toMatchObject({ completed: true, size: 6 * MiB + 7, sha256: answer.sha256 });
    // Replaced whole: the client's keys are gone (the relay adds only its own owner mark).
    const keys = (seen.input as { metadata: Array<{ key: string }> }).metadata.map((m) => m.key);
    expect(keys).not.toContain('admin');
    expect(seen.input).toMatchObject({
      title: 'Bound title',
      metadata: expect.arrayContaining([{ key: 'userId', value: '42' }]),
      tags: ['bound'],
      description: 'from the client',
    });
    // The upload ran as the minting principal, and the token is named only by its id.
    const line = relay.logs().find((l) => l.event === 'upload_finished' && l.videoId === videoId);
    const alice = relay
      .logs()
      .find((l) => l.event === 'upload_token_minted' && l.uploadTokenId === id);
    expect(alice).toBeDefined();
    expect(line).toMatchObject({ principal: expect.stringMatching(/^token:/), uploadTokenId: id });
    expect(relay.rawLogs()).not.toContain(token);
  });

  test('single use: the second upload is refused with upload_token_used_up', async () => {
    const { token, id } = await mint({ title: 'once' });
    const first = await uploadRaw(relay.url, 1000, { headers: bearer(token) });
    expect(first.status).toBe(201);
    const second = await uploadRaw(relay.url, 1000, { headers: bearer(token) });
    expect(second.status).toBe(401);
    expect(second.body).toMatchObject({ code: 'upload_token_used_up', status: 401 });
    expect(second.headers['www-authenticate']).toMatch(/error="invalid_token"/);
    const state = await request(relay.url)
      .get(`/v1/upload-tokens/${id}`)
      .set('Authorization', `Bearer ${ALICE}`);
    expect(state.body).toMatchObject({ status: 'used_up', uses: 1, remainingUses: 0 });
  });

  test('a request refused before the upload starts does not spend the use', async () => {
    const { token, id } = await mint();
    const refused = await request(relay.url)
      .post('/v1/videos')
      .set(bearer(token))
      .set('Content-Type', 'text/plain')
      .send('not a video');
    expect(refused.body.code).toBe('unsupported_media_type');
    const badField = await uploadRaw(relay.url, 10, {
      headers: bearer(token),
      query: 'public=maybe',
    });
    expect(badField.body.code).toBe('invalid_field');
    const state = await request(relay.url)
      .get(`/v1/upload-tokens/${id}`)
      .set('Authorization', `Bearer ${ALICE}`);
    expect(state.body).toMatchObject({ status: 'active', uses: 0 });
    expect((await uploadRaw(relay.url, 10, { headers: bearer(token) })).status).toBe(201);
  });

  test('maxUses: n uploads, then refused', async () => {
    const { token } = await mint({ maxUses: 2 });
    expect((await uploadRaw(relay.url, 10, { headers: bearer(token) })).status).toBe(201);
    expect((await uploadRaw(relay.url, 10, { headers: bearer(token) })).status).toBe(201);
    const third = await uploadRaw(relay.url, 10, { headers: bearer(token) });
    expect(third.body.code).toBe('upload_token_used_up');
  });

  test('expiry: once its ttl has passed the token is refused with upload_token_expired', async () => {
    const { token, id } = await mint({ ttl: 60 });
    clock += 60_000;
    try {
      const answer = await uploadRaw(relay.url, 10, { headers: bearer(token) });
      expect(answer.status).toBe(401);
      expect(answer.body.code).toBe('upload_token_expired');
      const state = await request(relay.url)
        .get(`/v1/upload-tokens/${id}`)
        .set('Authorization', `Bearer ${ALICE}`);
      expect(state.body).toMatchObject({ status: 'expired', uses: 0 });
      // A day after expiry it is forgotten: unknown.
      clock += 24 * 3600_000;
      const later = await uploadRaw(relay.url, 10, { headers: bearer(token) });
      expect(later.body.code).toBe('upload_token_unknown');
    } finally {
      clock = Date.now();
    }
  });

  test('revocation by its minter; anyone else is told it does not exist', async () => {
    const { token, id } = await mint({ maxUses: 3 });
    for (const path of [token, id]) {
      const asBob = await request(relay.url)
        .get(`/v1/upload-tokens/${path}`)
        .set('Authorization', `Bearer ${BOB}`);
      expect([asBob.status, asBob.body.code]).toEqual([404, 'upload_token_not_found']);
    }
    const bobDelete = await request(relay.url)
      .delete(`/v1/upload-tokens/${token}`)
      .set('Authorization', `Bearer ${BOB}`);
    expect(bobDelete.status).toBe(404);
    expect((await uploadRaw(relay.url, 10, { headers: bearer(token) })).status).toBe(201);
    const revoked = await request(relay.url)
      .delete(`/v1/upload-tokens/${token}`)
      .set('Authorization', `Bearer ${ALICE}`);
    expect(revoked.status).toBe(204);
    const refused = await uploadRaw(relay.url, 10, { headers: bearer(token) });
    expect([refused.status, refused.body.code]).toEqual([401, 'upload_token_revoked']);
    const state = await request(relay.url)
      .get(`/v1/upload-tokens/${id}`)
      .set('Authorization', `Bearer ${ALICE}`);
    expect(state.body).toMatchObject({ status: 'revoked', uses: 1 });
    expect(relay.rawLogs()).not.toContain(token);
  });

  test('unknown and malformed tokens: upload_token_unknown; odd paths: not found', async () => {
    const made = `to_${'A'.repeat(32)}`;
    for (const token of [made, 'to_short', `to_${'x'.repeat(5000)}`]) {
      const answer = await uploadRaw(relay.url, 10, { headers: bearer(token) });
      expect([answer.status, answer.body.code]).toEqual([401, 'upload_token_unknown']);
    }
    for (const path of ['nope', `utk_${'A'.repeat(16)}`, '..%2F..%2Fadmin', 'x'.repeat(3000)]) {
      const res = await request(relay.url)
        .get(`/v1/upload-tokens/${path}`)
        .set('Authorization', `Bearer ${ALICE}`);
      expect([res.status, res.body.code]).toEqual([404, 'upload_token_not_found']);
    }
  });

  test('a token cannot push into a video the client names; a token bound to a video uploads there', async () => {
    const minted = await mint();
    const { token } = minted;
    const existing = await relay.client.createVideo({ title: 'someone else’s' });
    const refused = await uploadRaw(relay.url, 10, {
      headers: bearer(token),
      query: `videoId=${existing.videoId}`,
    });
    expect([refused.status, refused.body.code]).toEqual([403, 'upload_token_video_mismatch']);
    // Refused once its fields were read: still that upload's one outcome, naming the token.
    expect(relay.logs()).toContainEqual(
      expect.objectContaining({
        event: 'upload_finished',
        outcome: 'upload_token_video_mismatch',
        uploadTokenId: minted.id,
      }),
    );
    expect(inspectVideo(emulator, existing.videoId).completed).toBe(false);

    const target = await relay.client.createVideo({ title: 'for the token' });
    const bound = await mint({ videoId: target.videoId });
    const answer = await uploadRaw(relay.url, 5000, {
      headers: bearer(bound.token),
      query: `videoId=${existing.videoId}`,
    });
    expect(answer.status).toBe(201);
    expect(answer.body.videoId).toBe(target.videoId);
    expect(inspectVideo(emulator, target.videoId)).toMatchObject({
      completed: true,
      sha256: answer.sha256,
    });
    expect(inspectVideo(emulator, existing.videoId).completed).toBe(false);
  });
});

describe('uploading with a token over tus', () => {
  test('creation spends the use; the same token carries the upload to its end; a second creation is refused', async () => {
    const { token } = await mint();
    const data = randomBytesOf(7 * MiB);
    const result = await tusUpload(`${relay.url}/v1/uploads`, data, {
      chunkSize: 5 * MiB,
      headers: bearer(token),
      retryDelays: [],
    });
    expect(inspectVideo(emulator, result.videoId!)).toMatchObject({
      completed: true,
      sha256: sha256(data),
    });
    const again = await request(relay.url)
      .post('/v1/uploads')
      .set(bearer(token))
      .set('Tus-Resumable', '1.0.0')
      .set('Upload-Length', '10');
    expect([again.status, again.body.code]).toEqual([401, 'upload_token_used_up']);
  });
});

describe('upload tokens on tus: binding, scope and size', () => {
  test('the token’s title and metadata win over Upload-Metadata; the outcome names the token', async () => {
    const { token, id } = await mint({ title: 'Bound title', metadata: { userId: '42' } });
    const data = randomBytesOf(1000);
    const result = await tusUpload(`${relay.url}/v1/uploads`, data, {
      headers: bearer(token),
      metadata: { filename: 'x.mp4', title: 'client title', metadata: '{"userId":"evil"}' },
      retryDelays: [],
    });
    const input = inspectVideo(emulator, result.videoId!).input;
    expect(input.title).toBe('Bound title');
    expect(input.metadata).toEqual(
      expect.arrayContaining([{ key: 'userId', value: '42' }]) as unknown,
    );
    expect(JSON.stringify(input.metadata)).not.toContain('evil');
    const line = relay
      .logs()
      .find((l) => l.event === 'upload_finished' && l.videoId === result.videoId);
    expect(line).toMatchObject({ route: 'resumable', uploadTokenId: id });
  });

  test('another token of the same minter does not reach the upload a token started', async () => {
    const first = await mint();
    const second = await mint();
    const created = await request(relay.url)
      .post('/v1/uploads')
      .set(bearer(first.token))
      .set('Tus-Resumable', '1.0.0')
      .set('Upload-Length', '10');
    expect(created.status).toBe(201);
    const other = await request(relay.url)
      .head(created.headers.location!)
      .set(bearer(second.token))
      .set('Tus-Resumable', '1.0.0');
    expect(other.status).toBe(404);
    const own = await request(relay.url)
      .head(created.headers.location!)
      .set(bearer(first.token))
      .set('Tus-Resumable', '1.0.0');
    expect(own.status).toBe(200);
  });

  test('maxFileSize holds for bytes of undeclared length too (a deferred tus length, a chunked body)', async () => {
    const deferred = await mint({ maxFileSize: 1000 });
    const created = await request(relay.url)
      .post('/v1/uploads')
      .set(bearer(deferred.token))
      .set('Tus-Resumable', '1.0.0')
      .set('Upload-Defer-Length', '1');
    expect(created.status).toBe(201);
    const over = await request(relay.url)
      .patch(created.headers.location!)
      .set(bearer(deferred.token))
      .set('Tus-Resumable', '1.0.0')
      .set('Upload-Offset', '0')
      .set('Content-Type', 'application/offset+octet-stream')
      .send(randomBytesOf(2000));
    expect([over.status, over.body.code]).toEqual([413, 'file_too_large']);
    const chunked = await mint({ maxFileSize: 1000 });
    const { request: undici } = await import('undici');
    const res = await undici(`${relay.url}/v1/videos?title=x`, {
      method: 'POST',
      headers: { ...bearer(chunked.token), 'content-type': 'video/mp4' },
      body: Readable.from(
        (async function* () {
          yield randomBytesOf(600);
          yield randomBytesOf(600);
        })(),
      ),
    });
    expect(res.statusCode).toBe(413);
    expect(((await res.body.json()) as { code: string }).code).toBe('file_too_large');
  });
});

describe('expiry on POST /upload?token=', () => {
  test('an upload begun before expiry finishes after it; an expired token starts nothing', async () => {
    const { token } = await mint({ ttl: 60 });
    const other = await mint({ ttl: 60 });
    const data = randomBytesOf(5 * MiB);
    const first = await request(relay.url)
      .post(`/upload?token=${token}`)
      .set('Content-Range', 'part 1/2')
      .attach('file', data, 'clip.mp4');
    expect(first.status).toBe(201);
    clock += 61_000;
    try {
      const last = await request(relay.url)
        .post(`/upload?token=${token}`)
        .set('Content-Range', 'part 2/2')
        .field('videoId', first.body.videoId as string)
        .attach('file', Buffer.from('end'), 'clip.mp4');
      expect(last.status).toBe(201);
      expect(inspectVideo(emulator, first.body.videoId as string)).toMatchObject({
        completed: true,
        sha256: sha256([data, Buffer.from('end')]),
      });
      const late = await request(relay.url)
        .post(`/upload?token=${other.token}`)
        .attach('file', Buffer.from('x'), 'clip.mp4');
      expect(late.status).toBe(401);
      expect(late.body).toMatchObject({
        code: 'upload_token_expired',
        type: expect.stringContaining('upload_token_expired'),
        status: 401,
      });
    } finally {
      clock = Date.now();
    }
  });
});

test('a token’s maxFileSize refuses a declared size over it, on POST /v1/videos and on tus creation, without spending it', async () => {
  const { token, id } = await mint({ maxFileSize: 1000, maxUses: 2 });
  const raw = await uploadRaw(relay.url, 2000, { headers: bearer(token) });
  expect([raw.status, raw.body.code]).toEqual([413, 'file_too_large']);
  const tus = await request(relay.url)
    .post('/v1/uploads')
    .set(bearer(token))
    .set('Tus-Resumable', '1.0.0')
    .set('Upload-Length', '2000');
  expect([tus.status, tus.body.code]).toEqual([413, 'file_too_large']);
  const state = await request(relay.url)
    .get(`/v1/upload-tokens/${id}`)
    .set('Authorization', `Bearer ${ALICE}`);
  expect(state.body).toMatchObject({ uses: 0 });
  expect((await uploadRaw(relay.url, 1000, { headers: bearer(token) })).status).toBe(201);
});
