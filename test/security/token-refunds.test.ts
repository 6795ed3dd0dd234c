/**
 * The attack catalogue, continued (issue #24 point 2): a refusal never spends an upload token's
 * use. On every route that takes a token, each way an upload can be refused or end without a
 * video is tried with a single-use token: its `uses` (as the backend sees them) must be what they
 * were before, and the client's corrected retry with the same token must then succeed. Every row
 * runs with tokens in memory and in Redis. Rows marked "was spent" were seen spending the use
 * before the fix.
 */
import { Readable } from 'node:stream';
import { Redis } from 'ioredis';
import request from 'supertest';
import { request as undici } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import { RelayError } from '../../src/kernel/errors';
import { createLogger } from '../../src/kernel/logger';
import type { UploadOutcome } from '../../src/engine/outcome';
import { RedisUploadTokenStore } from '../../src/stores/redis-upload-token-store';
import { MemoryUploadTokenStore } from '../../src/stores/upload-token-store';
import { UploadTokens } from '../../src/upload-tokens/tokens';
import { TokenUseSettlement } from '../../src/upload-tokens/use-settlement';
import { MiB, randomBytesOf } from '../helpers/data';
import { startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { TUS, createUpload, patch, relayWithRedis, testPrefix } from '../helpers/resumable';
import { mintUploadToken, type MintedToken } from '../helpers/upload-tokens';
import { multipartAround, uploadRaw } from '../helpers/upload';
import { eventually } from '../helpers/wait';

const BACKEND = 'refund-backend-token-0123456789';
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

let emulator: RunningEmulator;
beforeAll(async () => {
  emulator = await startTestEmulator();
});
afterAll(async () => {
  await emulator?.close();
});
afterEach(() => emulator.faults.clear());

/** Outcomes as the engine reports them; the built-in sinks (refunds among them) ran before. */
class Outcomes {
  private readonly seen: UploadOutcome[] = [];
  private readonly waiting: Array<{
    test: (o: UploadOutcome) => boolean;
    resolve: (o: UploadOutcome) => void;
  }> = [];

  readonly sink = {
    record: async (outcome: UploadOutcome) => {
      this.seen.push(outcome);
      for (const w of this.waiting.filter((w) => w.test(outcome))) w.resolve(outcome);
    },
  };

  /**
   * The first outcome of this token's uploads, once the engine has reported it. Rejects if none
   * comes within `timeoutMs` (the upload never ended), rather than waiting for Jest's timeout.
   */
  of(tokenId: string, timeoutMs = 15_000): Promise<UploadOutcome> {
    const test = (o: UploadOutcome) => o.uploadTokenId === tokenId;
    const found = this.seen.find(test);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no outcome for ${tokenId}: the upload never ended`)),
        timeoutMs,
      );
      this.waiting.push({
        test,
        resolve: (o) => {
          clearTimeout(timer);
          resolve(o);
        },
      });
    });
  }
}

interface Ctx {
  relay: TestRelay;
  url: string;
  outcomes: Outcomes;
  /** Another instance sharing the tokens (where a client goes when this one drains). */
  sibling(): Promise<string>;
}

type Route = 'POST /v1/videos' | 'tus creation' | '/upload?token= whole' | '/upload?token= chunked';

interface Row {
  route: Route;
  refusal: string;
  env?: Record<string, string>;
  mint?: object;
  /** The use was spent before the fix (the finding): said in the test's name. */
  wasSpent?: boolean;
  /** Makes the refusal happen; asserts its answer. */
  refuse(ctx: Ctx, token: MintedToken): Promise<void>;
  /** The corrected retry goes to another instance (this one is draining). */
  retryElsewhere?: boolean;
}

/** A body that sends `first`, then waits until released (with `rest`, or ending there). */
function stalled(first: Buffer) {
  let release!: (rest?: Buffer) => void;
  const gate = new Promise<Buffer | undefined>((resolve) => (release = resolve));
  let sent = false;
  async function* body() {
    yield first;
    sent = true;
    const rest = await gate;
    if (rest) yield rest;
  }
  return { body: Readable.from(body()), release, sent: () => sent };
}

async function answer(res: Awaited<ReturnType<typeof undici>>) {
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    body: (text ? JSON.parse(text) : {}) as Record<string, unknown>,
  };
}

/** One POST /upload?token= request: a whole file (no range) or one chunk. */
async function tokenUpload(
  url: string,
  token: string,
  data: Buffer,
  range?: string,
  headers: Record<string, string> = {},
) {
  const form = multipartAround(Readable.from([data]), data.length, { filename: 'clip.mp4' });
  return answer(
    await undici(`${url}/upload?token=${encodeURIComponent(token)}`, {
      method: 'POST',
      headers: {
        'content-type': form.contentType,
        'content-length': String(form.length),
        ...(range ? { 'content-range': range } : {}),
        ...headers,
      },
      body: form.body,
    }),
  );
}

function tusCreate(url: string, token: string, headers: Record<string, string>, body?: Buffer) {
  const req = request(url).post('/v1/uploads').set(bearer(token)).set(TUS).set(headers);
  return body === undefined
    ? req
    : req.set('Content-Type', 'application/offset+octet-stream').send(body);
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** The backend holds the principal's one upload slot with a request that waits. */
async function holdTheSlot(ctx: Ctx) {
  const body = stalled(randomBytesOf(MiB));
  const pending = undici(`${ctx.url}/v1/videos`, {
    method: 'POST',
    headers: {
      ...bearer(BACKEND),
      'content-type': 'video/mp4',
      'content-length': String(2 * MiB),
    },
    body: body.body,
  }).then(answer);
  // Admitted: the route's guard counts it as in progress.
  await eventually(() => ctx.relay.lifecycle.inProgress === 1);
  return {
    async free() {
      body.release(randomBytesOf(MiB));
      expect((await pending).status).toBe(201);
    },
  };
}

async function drain(ctx: Ctx) {
  await ctx.relay.lifecycle.drain(
    1000,
    () =>
      new RelayError('shutting_down', 'The relay shut down.', { headers: { 'Retry-After': '5' } }),
  );
}

/** api.video refuses to create videos for as long as the relay retries. */
function refuseContainers() {
  emulator.faults.add({ target: 'create', status: 502, times: 20 });
}

/** The client sends the start of a body, then leaves; resolves once the upload has ended. */
async function leaveMidBody(
  ctx: Ctx,
  token: MintedToken,
  path: string,
  headers: Record<string, string>,
) {
  const body = stalled(randomBytesOf(MiB));
  const abort = new AbortController();
  const sent = undici(`${ctx.url}${path}`, {
    method: 'POST',
    headers,
    body: body.body,
    signal: abort.signal,
  }).catch(() => undefined);
  // The relay counted the use (the upload started) before the client goes.
  await eventually(async () => (await usesOf(ctx.url, token.id)) === 1);
  abort.abort();
  body.release();
  await sent;
  const outcome = await ctx.outcomes.of(token.id);
  expect(outcome).toMatchObject({ kind: 'failed', code: 'client_aborted' });
}

const rows: Row[] = [
  // POST /v1/videos with a bearer upload token.
  {
    route: 'POST /v1/videos',
    refusal: 'a bad field (400)',
    async refuse(ctx, t) {
      const res = await uploadRaw(ctx.url, 10, { headers: bearer(t.token), query: 'public=maybe' });
      expect([res.status, res.body.code]).toEqual([400, 'invalid_field']);
    },
  },
  {
    route: 'POST /v1/videos',
    refusal: 'an unsupported media type (415)',
    async refuse(ctx, t) {
      const res = await uploadRaw(ctx.url, 10, {
        headers: bearer(t.token),
        contentType: 'text/plain',
      });
      expect([res.status, res.body.code]).toEqual([415, 'unsupported_media_type']);
    },
  },
  {
    route: 'POST /v1/videos',
    refusal: 'admission: too many uploads (429)',
    env: { UPLOAD_MAX_CONCURRENT_PER_CLIENT: '1' },
    async refuse(ctx, t) {
      const slot = await holdTheSlot(ctx);
      const res = await uploadRaw(ctx.url, 10, { headers: bearer(t.token) });
      expect([res.status, res.body.code]).toEqual([429, 'too_many_uploads_per_client']);
      await slot.free();
    },
  },
  {
    route: 'POST /v1/videos',
    refusal: 'the drain (503)',
    retryElsewhere: true,
    async refuse(ctx, t) {
      await drain(ctx);
      const res = await uploadRaw(ctx.url, 10, { headers: bearer(t.token) });
      expect([res.status, res.body.code]).toEqual([503, 'shutting_down']);
    },
  },
  {
    route: 'POST /v1/videos',
    refusal: 'a Content-Length over the token’s maxFileSize (413)',
    mint: { maxFileSize: 5000 },
    async refuse(ctx, t) {
      const res = await uploadRaw(ctx.url, 6000, { headers: bearer(t.token) });
      expect([res.status, res.body.code]).toEqual([413, 'file_too_large']);
    },
  },
  {
    route: 'POST /v1/videos',
    refusal: 'a body of unknown length found over the token’s maxFileSize (413)',
    mint: { maxFileSize: 5000 },
    wasSpent: true,
    async refuse(ctx, t) {
      const res = await answer(
        await undici(`${ctx.url}/v1/videos`, {
          method: 'POST',
          headers: { ...bearer(t.token), 'content-type': 'video/mp4' },
          body: Readable.from([randomBytesOf(6000)]),
        }),
      );
      expect([res.status, res.body.code]).toEqual([413, 'file_too_large']);
    },
  },
  {
    route: 'POST /v1/videos',
    refusal: 'api.video answers 502 and no video is made',
    wasSpent: true,
    async refuse(ctx, t) {
      refuseContainers();
      const res = await uploadRaw(ctx.url, 1000, { headers: bearer(t.token) });
      expect(res.status).toBe(502);
      emulator.faults.clear();
    },
  },
  {
    route: 'POST /v1/videos',
    refusal: 'api.video fails every try of the part (its container is deleted)',
    wasSpent: true,
    async refuse(ctx, t) {
      emulator.faults.add({ target: 'part', status: 500, times: 20 });
      const res = await uploadRaw(ctx.url, 1000, { headers: bearer(t.token) });
      expect(res.status).toBe(502);
      emulator.faults.clear();
    },
  },
  {
    route: 'POST /v1/videos',
    refusal: 'the client leaves before any byte went upstream',
    wasSpent: true,
    async refuse(ctx, t) {
      await leaveMidBody(ctx, t, '/v1/videos', {
        ...bearer(t.token),
        'content-type': 'video/mp4',
        'content-length': String(20 * MiB),
      });
    },
  },

  // tus creation with a bearer upload token.
  {
    route: 'tus creation',
    refusal: 'bad metadata (400)',
    wasSpent: true,
    async refuse(ctx, t) {
      const res = await tusCreate(ctx.url, t.token, {
        'Upload-Length': '1000',
        'Upload-Metadata': `public ${b64('maybe')}`,
      });
      expect([res.status, res.body.code]).toEqual([400, 'invalid_field']);
    },
  },
  {
    route: 'tus creation',
    refusal: 'an empty file (400)',
    wasSpent: true,
    async refuse(ctx, t) {
      const res = await tusCreate(ctx.url, t.token, { 'Upload-Length': '0' });
      expect([res.status, res.body.code]).toEqual([400, 'empty_file']);
    },
  },
  {
    route: 'tus creation',
    refusal: 'tus concatenation (400)',
    wasSpent: true,
    async refuse(ctx, t) {
      const res = await tusCreate(ctx.url, t.token, {
        'Upload-Length': '1000',
        'Upload-Concat': 'partial',
      });
      expect([res.status, res.body.code]).toEqual([400, 'tus_concatenation_unsupported']);
    },
  },
  {
    route: 'tus creation',
    refusal: 'admission: too many uploads (429, Retry-After: 5)',
    env: { UPLOAD_MAX_CONCURRENT_PER_CLIENT: '1' },
    wasSpent: true,
    async refuse(ctx, t) {
      const slot = await holdTheSlot(ctx);
      const res = await tusCreate(ctx.url, t.token, { 'Upload-Length': '1000' });
      expect([res.status, res.body.code]).toEqual([429, 'too_many_uploads_per_client']);
      expect(res.headers['retry-after']).toBe('5');
      await slot.free();
    },
  },
  {
    route: 'tus creation',
    refusal: 'too many unfinished uploads (429 too_many_sessions)',
    env: { UPLOAD_MAX_SESSIONS_PER_CLIENT: '1' },
    wasSpent: true,
    async refuse(ctx, t) {
      const open = await createUpload(ctx.url, 1000, BACKEND);
      const res = await tusCreate(ctx.url, t.token, { 'Upload-Length': '1000' });
      expect([res.status, res.body.code]).toEqual([429, 'too_many_sessions']);
      const ended = await request(ctx.url).delete(open).set(bearer(BACKEND)).set(TUS);
      expect(ended.status).toBe(204);
    },
  },
  {
    route: 'tus creation',
    refusal: 'an Upload-Length over the token’s maxFileSize (413)',
    mint: { maxFileSize: 5000 },
    async refuse(ctx, t) {
      const res = await tusCreate(ctx.url, t.token, { 'Upload-Length': '6000' });
      expect([res.status, res.body.code]).toEqual([413, 'file_too_large']);
    },
  },
  {
    route: 'tus creation',
    refusal: 'an Upload-Length over UPLOAD_MAX_FILE_SIZE (413)',
    env: { UPLOAD_MAX_FILE_SIZE: '1MiB' },
    wasSpent: true,
    async refuse(ctx, t) {
      const res = await tusCreate(ctx.url, t.token, { 'Upload-Length': String(2 * MiB) });
      expect([res.status, res.body.code]).toEqual([413, 'file_too_large']);
    },
  },
  {
    route: 'tus creation',
    refusal: 'the drain (503)',
    retryElsewhere: true,
    wasSpent: true,
    async refuse(ctx, t) {
      await drain(ctx);
      const res = await tusCreate(ctx.url, t.token, { 'Upload-Length': '1000' });
      expect([res.status, res.body.code]).toEqual([503, 'shutting_down']);
    },
  },
  {
    route: 'tus creation',
    refusal: 'creation-with-upload: api.video refuses the video (502), no part acknowledged',
    wasSpent: true,
    async refuse(ctx, t) {
      refuseContainers();
      const res = await tusCreate(
        ctx.url,
        t.token,
        { 'Upload-Length': '1000' },
        randomBytesOf(1000),
      );
      expect(res.status).toBe(502);
      // The upload is gone: nothing tells the client to resume it.
      expect(res.headers.location).toBeUndefined();
      emulator.faults.clear();
    },
  },
  {
    route: 'tus creation',
    refusal: 'creation-with-upload: the client leaves before any byte went upstream',
    wasSpent: true,
    async refuse(ctx, t) {
      await leaveMidBody(ctx, t, '/v1/uploads', {
        ...bearer(t.token),
        ...TUS,
        'upload-length': String(20 * MiB),
        'content-type': 'application/offset+octet-stream',
      });
    },
  },
  {
    route: 'tus creation',
    refusal: 'the upload terminated by DELETE',
    wasSpent: true,
    async refuse(ctx, t) {
      const path = await createUpload(ctx.url, 20 * MiB, t.token);
      expect((await patch(ctx.url, path, 0, randomBytesOf(MiB), t.token)).status).toBe(204);
      const ended = await request(ctx.url).delete(path).set(bearer(t.token)).set(TUS);
      expect(ended.status).toBe(204);
    },
  },
  {
    route: 'tus creation',
    refusal: 'the upload expired by the sweep',
    wasSpent: true,
    async refuse(ctx, t) {
      const path = await createUpload(ctx.url, 20 * MiB, t.token);
      expect((await patch(ctx.url, path, 0, randomBytesOf(MiB), t.token)).status).toBe(204);
      const later = Date.now() + ctx.relay.config.resumable.sessionTtlMs + 1000;
      expect(await ctx.relay.relay.sessions.sweep(later)).toBe(1);
      expect(await ctx.outcomes.of(t.id)).toMatchObject({ kind: 'expired' });
    },
  },

  // api.video's own POST /upload?token=, a whole file.
  {
    route: '/upload?token= whole',
    refusal: 'not a form (415)',
    async refuse(ctx, t) {
      const res = await answer(
        await undici(`${ctx.url}/upload?token=${t.token}`, {
          method: 'POST',
          headers: { 'content-type': 'video/mp4' },
          body: randomBytesOf(10),
        }),
      );
      expect(res.status).toBe(415);
    },
  },
  {
    route: '/upload?token= whole',
    refusal: 'admission: too many uploads (429)',
    env: { UPLOAD_MAX_CONCURRENT_PER_CLIENT: '1' },
    async refuse(ctx, t) {
      const slot = await holdTheSlot(ctx);
      const res = await tokenUpload(ctx.url, t.token, randomBytesOf(10));
      expect(res.status).toBe(429);
      await slot.free();
    },
  },
  {
    route: '/upload?token= whole',
    refusal: 'the drain (503)',
    retryElsewhere: true,
    async refuse(ctx, t) {
      await drain(ctx);
      const res = await tokenUpload(ctx.url, t.token, randomBytesOf(10));
      expect(res.status).toBe(503);
    },
  },
  {
    route: '/upload?token= whole',
    refusal: 'a file over the token’s maxFileSize (413)',
    mint: { maxFileSize: 5000 },
    async refuse(ctx, t) {
      const res = await tokenUpload(ctx.url, t.token, randomBytesOf(6000));
      expect(res.status).toBe(413);
    },
  },
  {
    route: '/upload?token= whole',
    refusal: 'api.video refuses the video (502)',
    async refuse(ctx, t) {
      refuseContainers();
      const res = await tokenUpload(ctx.url, t.token, randomBytesOf(1000));
      expect(res.status).toBe(502);
      emulator.faults.clear();
    },
  },

  // api.video's own POST /upload?token=, in chunks.
  {
    route: '/upload?token= chunked',
    refusal: 'a bad Content-Range (400)',
    async refuse(ctx, t) {
      const res = await tokenUpload(ctx.url, t.token, randomBytesOf(10), 'bytes 9-0/10');
      expect(res.status).toBe(400);
    },
  },
  {
    route: '/upload?token= chunked',
    refusal: 'a Content-Range size over the token’s maxFileSize (413)',
    mint: { maxFileSize: 5000 },
    async refuse(ctx, t) {
      const res = await tokenUpload(ctx.url, t.token, randomBytesOf(1000), 'bytes 0-999/6000');
      expect(res.status).toBe(413);
    },
  },
  {
    route: '/upload?token= chunked',
    refusal: 'api.video refuses the first chunk (502)',
    async refuse(ctx, t) {
      refuseContainers();
      const res = await tokenUpload(ctx.url, t.token, randomBytesOf(1000), 'bytes 0-999/2000');
      expect(res.status).toBe(502);
      emulator.faults.clear();
    },
  },
  {
    route: '/upload?token= chunked',
    refusal: 'the upload expired by the sweep after its first part',
    wasSpent: true,
    async refuse(ctx, t) {
      const first = await tokenUpload(ctx.url, t.token, randomBytesOf(5 * MiB), 'part 1/*');
      expect(first.status).toBe(201);
      const later = Date.now() + ctx.relay.config.resumable.sessionTtlMs + 1000;
      expect(await ctx.relay.relay.sessions.sweep(later)).toBe(1);
      expect(await ctx.outcomes.of(t.id)).toMatchObject({ kind: 'expired' });
    },
  },
];

/** The corrected retry: a small upload with the same token, on the route the client uses. */
async function retry(route: Route, url: string, token: string): Promise<void> {
  const data = randomBytesOf(1000);
  if (route === 'POST /v1/videos') {
    const res = await uploadRaw(url, 1000, { headers: bearer(token) });
    expect([res.status, res.body.code]).toEqual([201, undefined]);
  } else if (route === 'tus creation') {
    const path = await createUpload(url, 1000, token);
    const done = await patch(url, path, 0, data, token);
    expect(done.status).toBe(204);
    expect(done.headers['upload-video-id']).toMatch(/^vi/);
  } else {
    const range = route === '/upload?token= whole' ? undefined : 'bytes 0-999/1000';
    const res = await tokenUpload(url, token, data, range);
    expect([res.status, res.body.code]).toEqual([201, undefined]);
  }
}

async function usesOf(url: string, id: string): Promise<number> {
  const res = await request(url).get(`/v1/upload-tokens/${id}`).set(bearer(BACKEND));
  expect(res.status).toBe(200);
  return res.body.uses as number;
}

describe.each(['memory', 'redis'] as const)('tokens in %s', (store) => {
  async function relays(env: Record<string, string>, outcomes: Outcomes) {
    const settings = { RELAY_API_TOKENS: BACKEND, LOG_LEVEL: 'info', ...env };
    const closers: Array<() => Promise<void>> = [];
    if (store === 'memory') {
      const relay = await startTestRelay(emulator, {
        env: settings,
        outcomeSinks: [outcomes.sink],
      });
      closers.push(() => relay.close());
      return {
        relay,
        sibling: async () => {
          const other = await startTestRelay(emulator, {
            env: settings,
            uploadTokens: relay.relay.uploadTokens,
          });
          closers.push(() => other.close());
          return other.url;
        },
        close: () => Promise.all(closers.map((c) => c())),
      };
    }
    const main = await relayWithRedis(emulator, settings, { outcomeSinks: [outcomes.sink] });
    closers.push(() => main.close());
    return {
      relay: main.relay,
      sibling: async () => {
        const other = await relayWithRedis(emulator, settings, { prefix: main.prefix });
        closers.push(() => other.close());
        return other.relay.url;
      },
      close: () => Promise.all(closers.map((c) => c())),
    };
  }

  test.each(
    rows.map(
      (row) =>
        [row.route, `${row.refusal}${row.wasSpent ? ' (spent before the fix)' : ''}`, row] as const,
    ),
  )(
    '%s, %s: the use is not spent, and the corrected retry succeeds',
    async (route, _refusal, row) => {
      const outcomes = new Outcomes();
      const r = await relays(row.env ?? {}, outcomes);
      try {
        const ctx: Ctx = { relay: r.relay, url: r.relay.url, outcomes, sibling: r.sibling };
        const token = await mintUploadToken(ctx.url, BACKEND, { maxUses: 1, ...row.mint });
        expect(await usesOf(ctx.url, token.id)).toBe(0);
        await row.refuse(ctx, token);
        const elsewhere = row.retryElsewhere ? await ctx.sibling() : ctx.url;
        expect(await usesOf(elsewhere, token.id)).toBe(0);
        await retry(route, elsewhere, token.token);
        expect(await usesOf(elsewhere, token.id)).toBe(1);
      } finally {
        await r.close();
      }
    },
  );
});

describe.each(['memory', 'redis'] as const)('a use comes back at most once (%s)', (kind) => {
  let redis: Redis | undefined;
  afterEach(() => {
    redis?.disconnect();
    redis = undefined;
  });

  function tokensIn(): UploadTokens {
    if (kind === 'memory') return new UploadTokens(new MemoryUploadTokenStore());
    redis = new Redis('redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 });
    return new UploadTokens(new RedisUploadTokenStore(redis, testPrefix()));
  }

  const ending = (tokenId: string, tokenUse: string, how: 'completed' | 'failed') =>
    ({
      uploadId: `upload-${tokenUse}`,
      route: 'resumable',
      principal: 'token:backend',
      uploadTokenId: tokenId,
      tokenUse,
      bytesReceived: 0,
      bytesAcknowledged: 0,
      parts: 0,
      retries: 0,
      durationMs: 1,
      ...(how === 'completed'
        ? { kind: 'completed', videoId: 'vi1', video: { videoId: 'vi1' } }
        : { kind: 'failed', code: 'upload_terminated', containerDeleted: true }),
    }) as UploadOutcome;

  test('an ending reported twice gives one use back; a completion keeps its use for good', async () => {
    const tokens = tokensIn();
    const settle = new TokenUseSettlement(tokens, createLogger({ level: 'silent' }));
    const { token, record } = await tokens.mint(
      { id: 'token:backend', kind: 'token' },
      { ttl: 60, maxUses: 3, fields: {} },
    );
    const { hash } = await tokens.check(token, 'start');
    const uses = async () => (await tokens.store.get(hash))!.uses;
    await tokens.consume(hash, 'a');
    await tokens.consume(hash, 'b');
    await tokens.consume(hash, 'c');
    expect(await uses()).toBe(3);
    // The sweep reports an ending, fails to remove the session, and reports it again next time.
    await settle.record(ending(record.id, 'a', 'failed'));
    await settle.record(ending(record.id, 'a', 'failed'));
    expect(await uses()).toBe(2);
    // A completed upload never gives its use back, whatever is reported after.
    await settle.record(ending(record.id, 'b', 'completed'));
    await settle.record(ending(record.id, 'b', 'failed'));
    expect(await uses()).toBe(2);
    // A use never counted (a refusal before the upload began) gives nothing back.
    await settle.record(ending(record.id, 'never-counted', 'failed'));
    expect(await uses()).toBe(2);
    expect(await tokens.store.refund(hash, 'c')).toBe(true);
    expect(await tokens.store.refund(hash, 'c')).toBe(false);
    expect(await uses()).toBe(1);
  });
});
