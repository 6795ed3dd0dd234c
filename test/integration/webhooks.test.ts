/**
 * Webhooks end to end: real receivers on real sockets that verify every signature with the
 * `standardwebhooks` package, the outbox in the real Redis (a random prefix per file), real relays.
 */
import { createHash, randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { Server as ProxyServer } from 'proxy-chain';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { request } from 'undici';
import { upstreamDispatcher } from '../../src/apivideo/dispatcher';
import { loadConfig } from '../../src/kernel/config';
import type { RunningEmulator } from '../../src/emulator/app';
import openapi from '../../src/http/openapi.json';
import { createLogger } from '../../src/kernel/logger';
import type { UploadCompleted, UploadFailed } from '../../src/engine/outcome';
import { createWebhooks, type Webhooks } from '../../src/webhooks';
import { MemoryOutbox } from '../../src/webhooks/outbox';
import type { AttemptEvent } from '../../src/webhooks/worker';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { MiB, randomBytesOf } from '../helpers/data';
import { inspectVideo, startTestEmulator } from '../helpers/emulator';
import { createUpload, patch } from '../helpers/resumable';
import { tcpProxy } from '../helpers/tcp-proxy';
import { tusUpload } from '../helpers/tus';
import { uploadMultipart } from '../helpers/upload';
import { eventually } from '../helpers/wait';
import { WebhookReceiver, type ReceivedWebhook } from '../helpers/webhook-receiver';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const TOKEN = 'webhook-test-token-0123456789';
const TOKEN_PRINCIPAL = `token:${createHash('sha256').update(TOKEN).digest('hex').slice(0, 12)}`;
const REDIS_URL = 'redis://127.0.0.1:6379';
const PREFIX = `test-webhooks-${randomBytes(6).toString('hex')}:`;
/** Retries 20 ms apart instead of 5 s, 5 min…: the tests wait on the receiver, not on backoff. */
const FAST = [20, 20, 20, 20];

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(openapi, 'openapi.json');
function expectSchema(name: string, payload: unknown) {
  const validate = ajv.getSchema(`openapi.json#/components/schemas/${name}`)!;
  if (!validate(payload)) throw new Error(JSON.stringify(validate.errors, null, 2));
}

/** A real answer of POST /v1/webhooks/test against what the OpenAPI document says of it. */
function expectAnswer(status: number, mediaType: string, body: unknown) {
  const path = ['paths', '/v1/webhooks/test', 'post', 'responses', String(status), 'content']
    .concat([mediaType, 'schema'])
    .map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1'))
    .join('/');
  const validate = ajv.getSchema(`openapi.json#/${path}`);
  expect(validate).toBeDefined();
  if (!validate!(body)) throw new Error(JSON.stringify(validate!.errors, null, 2));
}

let emulator: RunningEmulator;
let admin: Redis;
const cleanups: Array<() => Promise<unknown>> = [];
beforeAll(async () => {
  emulator = await startTestEmulator();
  admin = new Redis(REDIS_URL);
});
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});
afterAll(async () => {
  const keys = await admin.keys(`${PREFIX}*`);
  if (keys.length) await admin.del(...keys);
  await admin.quit();
  await emulator.close();
});

async function receiver(): Promise<WebhookReceiver> {
  const r = await WebhookReceiver.start(SECRET);
  cleanups.push(() => r.close());
  return r;
}

interface Rig extends Webhooks {
  registry: Registry;
  attempts: AttemptEvent[];
  logs(): string;
  /** Resolves with the first attempt (past or future) that matches. */
  until(match: (a: AttemptEvent) => boolean, timeoutMs?: number): Promise<AttemptEvent>;
  close(graceMs?: number): Promise<{ delivered: number; left: number }>;
}

/** Sink, outbox and worker as main.ts builds them, from settings read by loadConfig. */
function rig(
  options: {
    urls: string[];
    redis?: boolean;
    redisUrl?: string;
    prefix?: string;
    schedule?: number[];
    env?: Record<string, string>;
    concurrency?: number;
    start?: boolean;
    dispatcher?: ReturnType<typeof upstreamDispatcher>;
  } = { urls: [] },
): Rig {
  const settings = loadConfig({
    NODE_ENV: 'test',
    RELAY_WEBHOOK_URL: options.urls.join(','),
    RELAY_WEBHOOK_SECRET: SECRET,
    ...options.env,
  }).webhooks;
  let lines = '';
  const logger = createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk: Buffer, _enc, done) {
        lines += chunk.toString();
        done();
      },
    }),
  });
  const registry = new Registry();
  const webhooks = createWebhooks({
    settings,
    logger,
    registry,
    // As main.ts connects: a write fails after one reconnection attempt rather than waiting.
    redis:
      options.redis === false
        ? undefined
        : new Redis(options.redisUrl ?? REDIS_URL, {
            maxRetriesPerRequest: 1,
            commandTimeout: 1000,
          }).on('error', () => undefined),
    ownsRedis: true,
    prefix: options.prefix ?? `${PREFIX}${randomBytes(4).toString('hex')}:`,
    retrySchedule: options.schedule ?? FAST,
    pollMs: 50,
    concurrency: options.concurrency,
    dispatcher: options.dispatcher,
  })!;
  const attempts: AttemptEvent[] = [];
  const waiters: Array<{
    match: (a: AttemptEvent) => boolean;
    resolve: (a: AttemptEvent) => void;
  }> = [];
  webhooks.worker.on('attempt', (a) => {
    attempts.push(a);
    for (const w of [...waiters])
      if (w.match(a)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(a);
      }
  });
  let closed: Promise<{ delivered: number; left: number }> | undefined;
  const close = (graceMs = 0) =>
    (closed ??= webhooks.worker.flush(graceMs).finally(() => webhooks.store.close()));
  cleanups.push(close);
  if (options.start !== false) webhooks.worker.start();
  return {
    ...webhooks,
    registry,
    attempts,
    logs: () => lines,
    close,
    until(match, timeoutMs = 15_000) {
      const past = attempts.find(match);
      if (past) return Promise.resolve(past);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no such attempt; saw ${JSON.stringify(attempts)}`)),
          timeoutMs,
        );
        waiters.push({
          match,
          resolve: (a) => {
            clearTimeout(timer);
            resolve(a);
          },
        });
      });
    },
  };
}

let relay: TestRelay | undefined;
/** A real upload through the relay, so the outcome carries api.video's (the emulator's) video. */
async function completedOutcome(): Promise<UploadCompleted> {
  relay ??= await startTestRelay(emulator, { env: { RELAY_API_TOKENS: TOKEN, LOG_LEVEL: 'warn' } });
  const size = 256 * 1024 + 3;
  const answer = await uploadMultipart(relay.url, size, {
    fields: [
      ['title', 'Holiday'],
      ['metadata', JSON.stringify({ userId: 'u-42' })],
    ],
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  expect(answer.status).toBe(201);
  const video = answer.body as UploadCompleted['video'];
  return {
    kind: 'completed',
    uploadId: String(answer.headers['x-request-id']),
    route: 'videos',
    principal: TOKEN_PRINCIPAL,
    videoId: video.videoId,
    video,
    title: 'Holiday',
    metadata: [{ key: 'userId', value: 'u-42' }],
    bytesReceived: size,
    bytesAcknowledged: size,
    parts: 1,
    retries: 0,
    durationMs: 42,
  };
}
afterAll(async () => relay?.close());

function failedOutcome(kind: 'failed' | 'expired' = 'failed'): UploadFailed {
  return {
    kind,
    uploadId: `up-${randomBytes(4).toString('hex')}`,
    route: 'resumable',
    principal: 'user-7',
    videoId: 'vi4blUQJFrYWbaG44NChkH27',
    bytesReceived: 6 * 1024 * 1024,
    bytesAcknowledged: 5 * 1024 * 1024,
    parts: 1,
    retries: 2,
    durationMs: 1234,
    code: kind === 'expired' ? 'upload_expired' : 'upstream_failed',
    containerDeleted: true,
  };
}

function expectVerified(received: ReceivedWebhook[]) {
  for (const r of received) expect(r.verifyError).toBeUndefined();
}

describe('POST /v1/webhooks/test', () => {
  test('sends a signed webhook.test to every endpoint and answers 202 with its webhook-id', async () => {
    const [a, b] = [await receiver(), await receiver()];
    const hooks = rig({ urls: [a.url, b.url] });
    const app = await startTestRelay(emulator, {
      env: { RELAY_API_TOKENS: TOKEN, LOG_LEVEL: 'warn' },
      deps: { webhookSink: hooks.sink, outcomeSinks: [hooks.sink] },
    });
    cleanups.push(() => app.close());
    const anonymous = await request(`${app.url}/v1/webhooks/test`, { method: 'POST' });
    expect(anonymous.statusCode).toBe(401);
    await anonymous.body.dump();

    const res = await request(`${app.url}/v1/webhooks/test`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(res.statusCode).toBe(202);
    const accepted = await res.body.json();
    expectAnswer(202, 'application/json', accepted);
    const { id } = accepted as { id: string };
    expect(id).toMatch(/^msg_[A-Za-z0-9_-]{22}$/);
    await Promise.all([a.waitFor(1), b.waitFor(1)]);
    for (const r of [a.received[0]!, b.received[0]!]) {
      expect(r.verifyError).toBeUndefined();
      expect(r.headers['webhook-id']).toBe(id);
      expect(r.headers['content-type']).toBe('application/json');
      expect(r.payload).toMatchObject({
        type: 'webhook.test',
        data: { principal: TOKEN_PRINCIPAL },
      });
      expectSchema('WebhookTest', r.payload);
    }
  });

  test('answers 409 webhooks_not_configured when no webhook is set, and is rate limited', async () => {
    const app = await startTestRelay(emulator, {
      env: { RELAY_API_TOKENS: TOKEN, LOG_LEVEL: 'warn' },
    });
    cleanups.push(() => app.close());
    const res = await request(`${app.url}/v1/webhooks/test`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(res.statusCode).toBe(409);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    const problem = await res.body.json();
    expect(problem).toMatchObject({ code: 'webhooks_not_configured' });
    expectAnswer(409, 'application/problem+json', problem);

    const sink = await receiver();
    const hooks = rig({ urls: [sink.url] });
    const limited = await startTestRelay(emulator, {
      env: { RELAY_API_TOKENS: TOKEN, LOG_LEVEL: 'warn' },
      deps: { webhookSink: hooks.sink },
    });
    cleanups.push(() => limited.close());
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++) {
      const r = await request(`${limited.url}/v1/webhooks/test`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      statuses.push(r.statusCode);
      if (i === 10) {
        expect(r.headers['retry-after']).toMatch(/^\d+$/);
        const tooMany = await r.body.json();
        expect(tooMany).toMatchObject({ code: 'too_many_webhook_tests' });
        expectAnswer(429, 'application/problem+json', tooMany);
      } else await r.body.dump();
    }
    expect(statuses).toEqual([...Array(10).fill(202), 429]);
  });
});

describe('events from outcomes', () => {
  test('an upload’s outcome arrives as upload.completed with its videoId and principal', async () => {
    const r = await receiver();
    const hooks = rig({ urls: [r.url] });
    const outcome = await completedOutcome();
    await hooks.sink.record(outcome);
    await r.waitFor(1);
    expectVerified(r.received);
    const { payload } = r.received[0]!;
    expect(payload).toMatchObject({
      type: 'upload.completed',
      data: {
        videoId: outcome.videoId,
        principal: TOKEN_PRINCIPAL,
        video: { videoId: outcome.videoId, title: 'Holiday' },
        title: 'Holiday',
        metadata: [{ key: 'userId', value: 'u-42' }],
        route: 'videos',
        uploadId: outcome.uploadId,
        bytesReceived: outcome.bytesReceived,
        bytesAcknowledged: outcome.bytesAcknowledged,
        parts: 1,
        durationMs: 42,
      },
    });
    expect(Math.abs(Date.parse(payload!.timestamp) - Date.now())).toBeLessThan(60_000);
    expectSchema('WebhookUploadCompleted', payload);
    const delivered = await hooks.until((a) => a.outcome === 'delivered');
    expect(delivered).toMatchObject({ type: 'upload.completed', endpoint: 0, attempt: 1 });
  });

  test('a failed upload sends upload.failed, an expired one upload.expired', async () => {
    const r = await receiver();
    const hooks = rig({ urls: [r.url] });
    await hooks.sink.record(failedOutcome('failed'));
    await hooks.sink.record(failedOutcome('expired'));
    await r.waitFor(2);
    expectVerified(r.received);
    const byType = Object.fromEntries(r.received.map((x) => [x.payload!.type, x.payload!]));
    expect(byType['upload.failed']!.data).toMatchObject({
      code: 'upstream_failed',
      videoId: 'vi4blUQJFrYWbaG44NChkH27',
      containerDeleted: true,
      bytesReceived: 6 * 1024 * 1024,
      bytesAcknowledged: 5 * 1024 * 1024,
      principal: 'user-7',
      route: 'resumable',
    });
    expect(byType['upload.expired']!.data).toMatchObject({
      code: 'upload_expired',
      containerDeleted: true,
    });
    expectSchema('WebhookUploadFailed', byType['upload.failed']);
    expectSchema('WebhookUploadExpired', byType['upload.expired']);
  });

  test('RELAY_WEBHOOK_EVENTS filters: a filtered event is not even stored', async () => {
    const r = await receiver();
    const hooks = rig({ urls: [r.url], env: { RELAY_WEBHOOK_EVENTS: 'upload.failed' } });
    await hooks.sink.record(await completedOutcome());
    expect(await hooks.store.stats()).toEqual({ pending: 0, oldestCreatedAt: undefined });
    await hooks.sink.record(failedOutcome());
    await r.waitFor(1);
    expect(r.received.map((x) => x.payload?.type)).toEqual(['upload.failed']);
  });
});

describe('through real uploads (the engine calls the sink)', () => {
  const bearer = { authorization: `Bearer ${TOKEN}` };

  test('POST /v1/videos: the event is in the outbox before the 201; upload.completed arrives with the videoId and principal', async () => {
    const r = await receiver();
    const hooks = rig({ urls: [r.url], start: false });
    const app = await startTestRelay(emulator, {
      env: { RELAY_API_TOKENS: TOKEN, LOG_LEVEL: 'warn' },
      deps: { outcomeSinks: [hooks.sink], webhookSink: hooks.sink },
    });
    cleanups.push(() => app.close());
    const size = 6 * MiB + 11;
    const answer = await uploadMultipart(app.url, size, {
      fields: [
        ['title', 'Beach'],
        ['metadata', JSON.stringify({ userId: 'u-1' })],
      ],
      headers: bearer,
    });
    expect(answer.status).toBe(201);
    // Durable before the client heard of it: stored, and nothing has delivered it yet.
    expect(await hooks.store.stats()).toMatchObject({ pending: 1 });
    hooks.worker.start();
    await r.waitFor(1);
    expectVerified(r.received);
    const { payload } = r.received[0]!;
    expect(payload).toMatchObject({
      type: 'upload.completed',
      data: {
        videoId: answer.body.videoId,
        video: { videoId: answer.body.videoId, title: 'Beach' },
        principal: TOKEN_PRINCIPAL,
        route: 'videos',
        uploadId: answer.headers['x-request-id'],
        title: 'Beach',
        metadata: [{ key: 'userId', value: 'u-1' }],
        bytesReceived: size,
        bytesAcknowledged: size,
        parts: 2,
      },
    });
    expectSchema('WebhookUploadCompleted', payload);
  });

  test('POST /v1/videos refused by api.video: upload.failed with the code and the deleted container', async () => {
    const r = await receiver();
    const hooks = rig({ urls: [r.url] });
    const app = await startTestRelay(emulator, {
      env: { RELAY_API_TOKENS: TOKEN, LOG_LEVEL: 'silent' },
      deps: { outcomeSinks: [hooks.sink] },
    });
    cleanups.push(() => app.close());
    emulator.faults.add({ target: 'part', part: 1, status: 400, times: 5 });
    cleanups.push(async () => emulator.faults.clear());
    const answer = await uploadMultipart(app.url, 64 * 1024, {
      fields: [['title', 'Refused']],
      headers: bearer,
    });
    expect(answer.status).toBe(502);
    await r.waitFor(1);
    expectVerified(r.received);
    const { payload } = r.received[0]!;
    expect(payload).toMatchObject({
      type: 'upload.failed',
      data: {
        code: 'upstream_failed',
        containerDeleted: true,
        principal: TOKEN_PRINCIPAL,
        route: 'videos',
        title: 'Refused',
        bytesAcknowledged: 0,
      },
    });
    const videoId = (payload!.data as { videoId: string }).videoId;
    expect(videoId).toMatch(/^vi/);
    expect(inspectVideo(emulator, videoId)).toMatchObject({ deleted: true });
    expectSchema('WebhookUploadFailed', payload);
  });

  test('tus: a resumable upload’s upload.completed; an abandoned one’s upload.expired once swept', async () => {
    const r = await receiver();
    const hooks = rig({ urls: [r.url] });
    const app = await startTestRelay(emulator, {
      env: { RELAY_API_TOKENS: TOKEN, LOG_LEVEL: 'silent', UPLOAD_SESSION_TTL: '1s' },
      deps: { outcomeSinks: [hooks.sink] },
    });
    cleanups.push(() => app.close());
    const data = randomBytesOf(6 * MiB + 5);
    const done = await tusUpload(`${app.url}/v1/uploads`, data, { headers: bearer });
    await r.waitFor(1);
    expect(r.received[0]!.payload).toMatchObject({
      type: 'upload.completed',
      data: {
        videoId: done.videoId,
        route: 'resumable',
        principal: TOKEN_PRINCIPAL,
        uploadId: done.url.split('/').pop(),
        bytesAcknowledged: data.length,
      },
    });

    const path = await createUpload(app.url, 12 * MiB, TOKEN);
    expect((await patch(app.url, path, 0, randomBytesOf(6 * MiB), TOKEN)).status).toBe(204);
    // The sweep main.ts runs on a timer, by hand until the abandoned upload's turn has come.
    await eventually(async () => {
      await app.sweepExpired();
      return r.received.length === 2;
    }, 5000);
    expectVerified(r.received);
    const expired = r.received[1]!.payload!;
    expect(expired).toMatchObject({
      type: 'upload.expired',
      data: {
        route: 'resumable',
        principal: TOKEN_PRINCIPAL,
        uploadId: path.split('/').pop(),
        containerDeleted: true,
        bytesAcknowledged: 5 * MiB,
      },
    });
    expectSchema('WebhookUploadExpired', expired);
  });
});

describe('delivery', () => {
  test('a receiver answering 503 twice then 200 gets it exactly once more: 3 attempts, one success', async () => {
    const r = (await receiver()).answer(503, 503, 200);
    const hooks = rig({ urls: [r.url] });
    await hooks.sink.record(failedOutcome());
    const done = await hooks.until((a) => a.outcome === 'delivered');
    expect(done.attempt).toBe(3);
    // Delivered means gone from the outbox: no attempt can follow.
    expect(await hooks.store.stats()).toMatchObject({ pending: 0 });
    expect(r.received).toHaveLength(3);
    expectVerified(r.received);
    expect(new Set(r.received.map((x) => x.headers['webhook-id'])).size).toBe(1);
    expect(hooks.attempts.map((a) => [a.outcome, a.status])).toEqual([
      ['retry', 503],
      ['retry', 503],
      ['delivered', 200],
    ]);
    const metrics = await hooks.registry.metrics();
    expect(metrics).toContain(
      'relay_webhook_deliveries_total{event="upload.failed",endpoint="0"} 1',
    );
    expect(metrics).toContain(
      'relay_webhook_failed_attempts_total{event="upload.failed",endpoint="0",reason="http_5xx"} 2',
    );
    expect(metrics).toContain('relay_webhook_pending 0');
    // One log line per attempt, with its outcome; no secret, no signature, no URL.
    const lines = hooks
      .logs()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.event === 'webhook_attempt');
    expect(lines.map((l) => [l.outcome, l.status, l.attempt])).toEqual([
      ['retry', 503, 1],
      ['retry', 503, 2],
      ['delivered', 200, 3],
    ]);
    for (const secretish of [
      SECRET,
      SECRET.slice('whsec_'.length),
      r.url,
      ...r.received.map((x) => String(x.headers['webhook-signature']).slice(3)),
    ])
      expect(hooks.logs()).not.toContain(secretish);
  });

  test('Retry-After is honoured: the next attempt waits at least that long', async () => {
    const r = (await receiver()).answer({ status: 503, headers: { 'Retry-After': '1' } }, 200);
    const hooks = rig({ urls: [r.url] });
    await hooks.sink.record(failedOutcome());
    await r.waitFor(2);
    expect(r.received[1]!.at - r.received[0]!.at).toBeGreaterThanOrEqual(950);
    expectVerified(r.received);
    expect(await hooks.until((a) => a.outcome === 'delivered')).toMatchObject({ attempt: 2 });
  });

  test('an attempt that outlasts RELAY_WEBHOOK_TIMEOUT_MS fails and is retried', async () => {
    const r = (await receiver()).answer('hang', 200);
    const hooks = rig({ urls: [r.url], env: { RELAY_WEBHOOK_TIMEOUT_MS: '300' } });
    await hooks.sink.record(failedOutcome());
    expect(await hooks.until((a) => a.outcome === 'delivered')).toMatchObject({ attempt: 2 });
    expect(hooks.logs()).toMatch(/"error":"timed out".*"outcome":"retry"/);
    expect(await hooks.registry.metrics()).toContain('reason="timeout"} 1');
  });

  test('a redirect is not followed: a 3xx is a failed attempt, and the schedule ends in gave_up', async () => {
    const elsewhere = await receiver();
    const r = (await receiver()).answerAlways({
      status: 307,
      headers: { Location: elsewhere.url },
    });
    const hooks = rig({ urls: [r.url], schedule: [20] });
    await hooks.sink.record(failedOutcome());
    const last = await hooks.until((a) => a.outcome === 'gave_up');
    expect(last).toMatchObject({ attempt: 2, status: 307 });
    expect(r.received).toHaveLength(2);
    expect(elsewhere.received).toHaveLength(0);
    expect(await hooks.store.stats()).toMatchObject({ pending: 0 });
    expect(await hooks.registry.metrics()).toContain(
      'relay_webhook_dropped_total{event="upload.failed",endpoint="0",reason="exhausted"} 1',
    );
  });

  test('410 Gone disables that endpoint (with a warning); the others still get every event', async () => {
    const gone = (await receiver()).answerAlways(410);
    const ok = await receiver();
    const hooks = rig({ urls: [gone.url, ok.url] });
    await hooks.sink.record(failedOutcome());
    await hooks.until((a) => a.outcome === 'endpoint_gone');
    await hooks.sink.record(failedOutcome('expired'));
    await ok.waitFor(2);
    await eventually(() => hooks.attempts.filter((a) => a.outcome === 'delivered').length === 2);
    expect(await hooks.store.stats()).toMatchObject({ pending: 0 });
    expect(gone.received).toHaveLength(1);
    expectVerified([...gone.received, ...ok.received]);
    expect(hooks.logs()).toMatch(/"level":40.*"status":410.*"outcome":"endpoint_gone"/);
    expect(hooks.logs()).toContain('webhook endpoint 0 answered 410 Gone');
  });

  test('a tampered body, id or timestamp fails verification; another secret too', async () => {
    const r = await receiver();
    const hooks = rig({ urls: [r.url] });
    await hooks.sink.record(failedOutcome());
    await r.waitFor(1);
    const { body, headers } = r.received[0]!;
    const verifier = new Webhook(SECRET);
    const h = headers as Record<string, string>;
    expect(verifier.verify(body, h)).toMatchObject({ type: 'upload.failed' });
    const tampered = body.replace('"containerDeleted":true', '"containerDeleted":false');
    expect(tampered).not.toBe(body);
    expect(() => verifier.verify(tampered, h)).toThrow(WebhookVerificationError);
    expect(() => verifier.verify(body, { ...h, 'webhook-id': 'msg_other' })).toThrow(
      WebhookVerificationError,
    );
    const ts = String(Number(h['webhook-timestamp']) - 1);
    expect(() => verifier.verify(body, { ...h, 'webhook-timestamp': ts })).toThrow(
      WebhookVerificationError,
    );
    const other = new Webhook(`whsec_${randomBytes(32).toString('base64')}`);
    expect(() => other.verify(body, h)).toThrow(WebhookVerificationError);
  });

  test('goes through the configured proxy, like api.video calls', async () => {
    const r = await receiver();
    const seen: string[] = [];
    const proxy = new ProxyServer({
      port: 0,
      host: '127.0.0.1',
      verbose: false,
      prepareRequestFunction: ({ hostname, port }) => {
        seen.push(`${hostname}:${port}`);
        return {};
      },
    });
    await proxy.listen();
    cleanups.push(() => proxy.close(true));
    const dispatcher = upstreamDispatcher({ httpProxy: `http://127.0.0.1:${proxy.port}` });
    cleanups.push(() => dispatcher.close());
    const hooks = rig({ urls: [r.url], dispatcher });
    await hooks.sink.record(failedOutcome());
    await r.waitFor(1);
    expectVerified(r.received);
    expect(seen).toEqual([new URL(r.url).host]);
  });
});

test('credentials in the URL are sent as Basic auth, and never logged', async () => {
  const r = await receiver();
  const url = new URL(r.url);
  url.username = 'hook-user';
  url.password = 's3cret/pass';
  const hooks = rig({ urls: [url.toString()] });
  await hooks.sink.record(failedOutcome());
  await r.waitFor(1);
  expectVerified(r.received);
  expect(r.received[0]!.headers.authorization).toBe(
    `Basic ${Buffer.from('hook-user:s3cret/pass').toString('base64')}`,
  );
  await hooks.until((a) => a.outcome === 'delivered');
  expect(hooks.logs()).not.toContain('s3cret');
  expect(hooks.logs()).not.toContain('hook-user');
});

describe('without Redis', () => {
  test('the in-memory outbox delivers too, and is bounded: past its size the oldest are dropped', async () => {
    const r = (await receiver()).answer(503);
    const hooks = rig({ urls: [r.url], redis: false });
    await hooks.sink.record(failedOutcome());
    expect(await hooks.until((a) => a.outcome === 'delivered')).toMatchObject({ attempt: 2 });
    expectVerified(r.received);

    const evicted: string[] = [];
    const outbox = new MemoryOutbox({ maxEntries: 2, onEvict: (d) => evicted.push(d.id) });
    const delivery = (id: string) => ({
      id,
      eventId: id,
      type: 'upload.failed' as const,
      body: '{}',
      endpoint: 'e',
      createdAt: Date.now(),
      attempts: 0,
    });
    await outbox.add([delivery('a'), delivery('b')]);
    await outbox.add([delivery('c')]);
    expect(evicted).toEqual(['a']);
    expect((await outbox.claim(Date.now(), 1000, 10)).map((d) => d.id).sort()).toEqual(['b', 'c']);
  });
});

describe('durability with Redis', () => {
  test('record() has stored the event before it resolves', async () => {
    const prefix = `${PREFIX}durable:`;
    const hooks = rig({ urls: ['http://127.0.0.1:9/hooks'], prefix, start: false });
    await hooks.sink.record(failedOutcome());
    expect(await admin.zcard(`${prefix}due`)).toBe(1);
    expect(await hooks.store.stats()).toMatchObject({ pending: 1 });
    const metrics = await hooks.registry.metrics();
    expect(metrics).toContain('relay_webhook_pending 1');
    expect(metrics).toMatch(/relay_webhook_oldest_pending_age_seconds \d/);
  });

  test('Redis away when an upload ends: the event is held, and delivered once Redis is back', async () => {
    const redisProxy = await tcpProxy(6379);
    cleanups.push(() => redisProxy.close());
    const r = await receiver();
    const hooks = rig({ urls: [r.url], redisUrl: `redis://127.0.0.1:${redisProxy.port}` });
    await hooks.sink.record(failedOutcome());
    // Delivered and recorded as such (else it stays leased, and is sent again: at least once).
    await hooks.until((a) => a.outcome === 'delivered');
    redisProxy.cut();
    // record() resolves (the upload is answered), the event held in memory...
    await hooks.sink.record(failedOutcome('expired'));
    expect(hooks.logs()).toContain('Redis cannot store webhook events');
    expect(r.received).toHaveLength(1);
    // ...and written to Redis, then delivered, once Redis answers again.
    redisProxy.restore();
    await r.waitFor(2);
    expectVerified(r.received);
    expect(r.received[1]!.payload?.type).toBe('upload.expired');
    expect(hooks.logs()).toContain('webhook events held in memory are in Redis again');
    await eventually(async () => (await hooks.store.stats()).pending === 0);
    expect(r.received).toHaveLength(2); // the write that timed out during the outage added no copy
  });

  test('a receiver down while the relay restarts still gets the event after the restart', async () => {
    const prefix = `${PREFIX}restart:`;
    const r = (await receiver()).answer('drop');
    const before = rig({ urls: [r.url], prefix, schedule: [200, 200, 200] });
    await before.sink.record(failedOutcome());
    await before.until((a) => a.outcome === 'retry');
    // The relay stops: worker and outbox closed, the event left in Redis.
    expect(await before.close(0)).toEqual({ delivered: 0, left: 1 });
    // A new process on the same Redis; the receiver is back.
    const after = rig({ urls: [r.url], prefix, schedule: [200, 200, 200] });
    const done = await after.until((a) => a.outcome === 'delivered');
    expect(done.attempt).toBe(2);
    expect(r.received).toHaveLength(2);
    expect(r.received[1]!.headers['webhook-id']).toBe(r.received[0]!.headers['webhook-id']);
    expectVerified(r.received);
    expect(r.received[1]!.payload?.type).toBe('upload.failed');
  });

  test('the drain delivers what it can within the grace period and leaves the rest in Redis', async () => {
    const prefix = `${PREFIX}drain:`;
    const fast = await receiver();
    const slow = (await receiver()).answer('hang');
    const first = rig({ urls: [fast.url, slow.url], prefix, start: false });
    await first.sink.record(failedOutcome());
    first.worker.start();
    await Promise.all([fast.waitFor(1), slow.waitFor(1)]);
    // The slow receiver's attempt is still in flight when the grace period ends.
    expect(await first.close(300)).toMatchObject({ left: 1 });
    expect(first.attempts.map((a) => a.outcome).sort()).toEqual(['delivered', 'interrupted']);
    // Interrupted by the drain is not an attempt that counts: the next instance tries at once.
    const second = rig({ urls: [fast.url, slow.url], prefix });
    expect(await second.until((a) => a.outcome === 'delivered')).toMatchObject({
      endpoint: 1,
      attempt: 1,
    });
    expect(fast.received).toHaveLength(1);
    expect(slow.received).toHaveLength(2);
  });

  test('two replicas sharing Redis deliver each event exactly once', async () => {
    const prefix = `${PREFIX}replicas:`;
    const r = await receiver();
    const a = rig({ urls: [r.url], prefix, start: false, concurrency: 3 });
    const b = rig({ urls: [r.url], prefix, start: false, concurrency: 3 });
    const events = 30;
    for (let i = 0; i < events; i++) await (i % 2 ? a : b).sink.record(failedOutcome());
    a.worker.start();
    b.worker.start();
    await r.waitFor(events);
    await eventually(() => a.attempts.length + b.attempts.length === events);
    expect(await a.store.stats()).toMatchObject({ pending: 0 });
    const ids = r.received.map((x) => String(x.headers['webhook-id']));
    expect(new Set(ids).size).toBe(events);
    expect(ids).toHaveLength(events);
    expectVerified(r.received);
    // Both replicas took part, and neither delivered what the other had.
    expect(a.attempts.length).toBeGreaterThan(0);
    expect(b.attempts.length).toBeGreaterThan(0);
    expect([...a.attempts, ...b.attempts].every((x) => x.outcome === 'delivered')).toBe(true);
  });

  test('an endpoint removed from RELAY_WEBHOOK_URL gets nothing more after a restart', async () => {
    const prefix = `${PREFIX}removed:`;
    const [kept, removed] = [await receiver(), await receiver()];
    const before = rig({ urls: [removed.url, kept.url], prefix, start: false });
    await before.sink.record(failedOutcome());
    await before.close();
    const after = rig({ urls: [kept.url], prefix });
    await eventually(() => after.attempts.length === 2);
    expect(after.attempts.map((a) => [a.endpoint, a.outcome]).sort()).toEqual([
      [-1, 'dropped'],
      [0, 'delivered'],
    ]);
    expect(removed.received).toHaveLength(0);
    expect(kept.received).toHaveLength(1);
    expect(await after.registry.metrics()).toContain('reason="endpoint_removed"} 1');
  });

  test('a claim is a lease: nobody else gets the delivery until it runs out, and a stale holder cannot finish it', async () => {
    const prefix = `${PREFIX}lease:`;
    const one = rig({ urls: ['http://127.0.0.1:9/hooks'], prefix, start: false });
    const two = rig({ urls: ['http://127.0.0.1:9/hooks'], prefix, start: false });
    await one.sink.record(failedOutcome());
    const [held] = await one.store.claim(Date.now(), 300, 10);
    expect(held).toBeDefined();
    expect(await two.store.claim(Date.now(), 300, 10)).toEqual([]);
    // The holder "died": once the lease runs out the other replica claims it.
    const later = Date.now() + 301;
    const [taken] = await two.store.claim(later, 300, 10);
    expect(taken?.id).toBe(held!.id);
    await one.store.complete(held!); // stale: a no-op
    expect(await two.store.stats()).toMatchObject({ pending: 1 });
    await two.store.complete(taken!);
    expect(await two.store.stats()).toMatchObject({ pending: 0 });
  });
});

describe('the receivers of docs/api.md', () => {
  const doc = readFileSync(join(__dirname, '../../docs/api.md'), 'utf8');
  const section = doc.slice(doc.indexOf('\n## Webhooks\n') + 1).split('\n## ')[0]!;
  const block = (lang: string) => {
    const blocks = [...section.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))];
    expect(blocks).toHaveLength(1);
    return blocks[0]![1]!;
  };
  const dir = join(__dirname, '../.work');

  async function startSnippet(
    lang: 'js' | 'python',
  ): Promise<{ url: string; lines: string[]; child: ChildProcess; next(): Promise<string> }> {
    mkdirSync(dir, { recursive: true });
    const file = join(
      dir,
      `webhook-receiver-${randomBytes(4).toString('hex')}.${lang === 'js' ? 'js' : 'py'}`,
    );
    writeFileSync(file, block(lang));
    const child = spawn(lang === 'js' ? process.execPath : 'python3', [file], {
      env: { PATH: process.env.PATH!, PORT: '0', RELAY_WEBHOOK_SECRET: SECRET },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (code) => {
      if (code) console.error(`${lang} receiver exited ${code}: ${stderr}`);
    });
    cleanups.push(async () => {
      child.kill();
    });
    const lines: string[] = [];
    const waiting: Array<(line: string) => void> = [];
    let buffer = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      let i;
      while ((i = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 1);
        const w = waiting.shift();
        if (w) w(line);
        else lines.push(line);
      }
    });
    const next = () =>
      lines.length
        ? Promise.resolve(lines.shift()!)
        : new Promise<string>((resolve) => waiting.push(resolve));
    const port = /^listening on (\d+)$/.exec(await next())![1];
    const path = lang === 'js' ? '/relay-events' : '/';
    return { url: `http://127.0.0.1:${port}${path}`, lines, child, next };
  }

  test.each(['js', 'python'] as const)(
    'the %s receiver verifies the relay’s events and refuses tampered ones',
    async (lang) => {
      const receiverProcess = await startSnippet(lang);
      const hooks = rig({ urls: [receiverProcess.url] });
      const outcome = await completedOutcome();
      await hooks.sink.record(outcome);
      const line = await receiverProcess.next();
      const delivered = await hooks.until((a) => a.outcome === 'delivered');
      expect(line).toBe(
        `${delivered.webhookId} upload.completed ${outcome.videoId} by ${TOKEN_PRINCIPAL}`,
      );
      // Signed by the package, then tampered with: the snippet answers 400.
      const body = JSON.stringify({
        type: 'webhook.test',
        timestamp: new Date().toISOString(),
        data: { principal: 'p' },
      });
      const now = new Date();
      const headers = {
        'content-type': 'application/json',
        'webhook-id': 'msg_tamper',
        'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
        'webhook-signature': new Webhook(SECRET).sign('msg_tamper', now, body),
      };
      const post = async (b: string, h: Record<string, string>) => {
        const res = await request(receiverProcess.url, { method: 'POST', headers: h, body: b });
        await res.body.dump();
        return res.statusCode;
      };
      expect(await post(body.replace('"p"', '"q"'), headers)).toBe(400);
      // Correctly signed, but ten minutes old: a replay.
      const then = new Date(now.getTime() - 600_000);
      const replay = {
        ...headers,
        'webhook-timestamp': String(Math.floor(then.getTime() / 1000)),
        'webhook-signature': new Webhook(SECRET).sign('msg_tamper', then, body),
      };
      expect(await post(body, replay)).toBe(400);
      expect(await post(body, headers)).toBe(204);
      expect(await receiverProcess.next()).toBe('msg_tamper webhook.test');
    },
  );
});
