/**
 * Traces (issue #26): the relay runs as its own process, as it ships (dist/main.js, npm start's
 * node flags), with OTEL_EXPORTER_OTLP_ENDPOINT pointing at a collector this test serves. Each
 * route's upload, sent with a client's W3C traceparent, is one trace under the client's trace id:
 * the request's server span, the container's creation, one span per part with its attributes, the
 * Redis calls (tus), api.video's status when the relay must ask; log lines carry the trace id.
 * Without the endpoint, no OpenTelemetry module is even loaded.
 */
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import request from 'supertest';
import { request as undici } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { TEST_API_KEY, inspectVideo, startTestEmulator } from '../helpers/emulator';
import {
  startCollector,
  traceOf,
  type Collector,
  type CollectedSpan,
} from '../helpers/otlp-collector';
import { startRelayProcess, type RelayProcess } from '../helpers/process';
import { TUS, auth, patch, testPrefix } from '../helpers/resumable';
import { multipartAround, uploadMultipart } from '../helpers/upload';
import { mintUploadToken } from '../helpers/upload-tokens';
import { eventually } from '../helpers/wait';
import { WebhookReceiver } from '../helpers/webhook-receiver';

const TOKEN = 'tracing-static-token-0123456789';
const PROBE = join(__dirname, '../helpers/loaded-packages.mjs');
const RELAY_SCOPE = 'apivideo-upload-relay';
const WEBHOOK_SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
const WEBHOOK_PATH_SECRET = 'T0001-B0001-webhookpathsecret';

/** A client's own trace context: one trace id for an upload, a span id per request. */
function clientTrace() {
  const traceId = randomBytes(16).toString('hex');
  const spanIds: string[] = [];
  return {
    traceId,
    spanIds,
    /** The header of one more request of this trace. */
    header: () => {
      const spanId = randomBytes(8).toString('hex');
      spanIds.push(spanId);
      return { traceparent: `00-${traceId}-${spanId}-01` };
    },
  };
}

const isPart = (s: CollectedSpan) => s.scope === RELAY_SCOPE && s.name === 'apivideo.upload_part';
const isRedis = (s: CollectedSpan) => s.scope === '@opentelemetry/instrumentation-ioredis';
const serverSpans = (spans: CollectedSpan[], path: string) =>
  spans.filter((s) => s.kind === 'server' && s.attributes['url.path'] === path);
const clientCall = (spans: CollectedSpan[], method: string, path: RegExp) =>
  spans.filter(
    (s) =>
      s.kind === 'client' &&
      s.attributes['http.request.method'] === method &&
      path.test(String(s.attributes['url.path'])),
  );

/** The JSON lines the relay wrote to stdout. */
function logLines(relay: RelayProcess): Array<Record<string, unknown>> {
  return relay
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

async function uploadFinishedLine(relay: RelayProcess, videoId: string) {
  let line: Record<string, unknown> | undefined;
  await eventually(() => {
    line = logLines(relay).find((l) => l.event === 'upload_finished' && l.videoId === videoId);
    return line !== undefined;
  });
  return line!;
}

function relayEnv(emulator: RunningEmulator, collector: Collector, extra: Record<string, string>) {
  return {
    APIVIDEO_API_KEY: TEST_API_KEY,
    APIVIDEO_BASE_URL: emulator.url,
    RELAY_API_TOKENS: TOKEN,
    REDIS_URL: 'redis://127.0.0.1:6379',
    REDIS_KEY_PREFIX: testPrefix(),
    UPLOAD_PART_SIZE: '5MiB',
    LOG_LEVEL: 'info',
    OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
    // Spans leave within 50 ms of ending: the test waits for them, not for a timer.
    OTEL_BSP_SCHEDULE_DELAY: '50',
    ...extra,
  };
}

let emulator: RunningEmulator;
beforeAll(async () => (emulator = await startTestEmulator()));
afterAll(async () => emulator.close());

describe('traces over OTLP http/json', () => {
  let collector: Collector;
  let relay: RelayProcess;
  let receiver: WebhookReceiver;
  beforeAll(async () => {
    collector = await startCollector();
    receiver = await WebhookReceiver.start(WEBHOOK_SECRET);
    relay = await startRelayProcess(
      relayEnv(emulator, collector, {
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_SERVICE_NAME: 'relay-under-test',
        // A webhook URL is a credential (a Slack-style hook's path is its secret).
        RELAY_WEBHOOK_URL: `${receiver.url}/hooks/${WEBHOOK_PATH_SECRET}`,
        RELAY_WEBHOOK_SECRET: WEBHOOK_SECRET,
      }),
    );
  });
  afterAll(async () => {
    await relay?.stop('SIGKILL');
    await collector?.close();
    await receiver?.close();
  });

  test('POST /v1/videos: one trace under the client’s; server span, container, a span per part; the log line carries it', async () => {
    const client = clientTrace();
    const answer = await uploadMultipart(relay.url, 12 * MiB, {
      headers: { ...auth(TOKEN), ...client.header() },
    });
    expect(answer.status).toBe(201);
    const videoId = answer.body.videoId as string;
    const trace = await collector.waitFor((spans) => {
      const t = traceOf(spans, client.traceId);
      const done =
        serverSpans(t.spans, '/v1/videos').length === 1 && t.spans.filter(isPart).length === 3;
      return done && t.orphans(client.spanIds).length === 0 && t;
    });
    expect(trace.spans.every((s) => s.resource['service.name'] === 'relay-under-test')).toBe(true);

    const [server] = serverSpans(trace.spans, '/v1/videos');
    expect(server!.parentSpanId).toBe(client.spanIds[0]);
    expect(server!.attributes).toMatchObject({
      'http.route': '/v1/videos',
      'http.response.status_code': 201,
      'relay.route': 'videos',
      'relay.upload_id': expect.any(String),
      'apivideo.video_id': videoId,
      'relay.upload.outcome': 'completed',
      'relay.upload.bytes': 12 * MiB,
      'relay.upload.parts': 3,
    });
    // The container's creation: api.video's POST /videos, inside this request.
    const creations = clientCall(trace.spans, 'POST', /^\/videos$/);
    expect(creations).toHaveLength(1);
    expect(trace.under(creations[0]!, server!)).toBe(true);
    expect(creations[0]!.attributes['http.response.status_code']).toBe(201);

    const parts = trace.spans.filter(isPart).sort(byPart);
    expect(parts.map((p) => p.attributes)).toEqual(
      [5 * MiB, 5 * MiB, 2 * MiB].map((size, i) => ({
        'apivideo.video_id': videoId,
        'relay.part.number': i + 1,
        'relay.part.size': size,
        'relay.part.last': i === 2,
        'relay.part.attempts': 1,
        'relay.part.status_code': 201,
        'relay.part.outcome': 'acknowledged',
      })),
    );
    for (const part of parts) {
      expect(trace.under(part, server!)).toBe(true);
      // Each attempt is api.video's POST /videos/{id}/source, as the undici instrumentation sees it.
      expect(trace.childrenOf(part)).toEqual([
        expect.objectContaining({
          kind: 'client',
          attributes: expect.objectContaining({ 'url.path': `/videos/${videoId}/source` }),
        }),
      ]);
    }

    const line = await uploadFinishedLine(relay, videoId);
    expect(line.trace_id).toBe(client.traceId);
    expect(trace.spans.map((s) => s.spanId)).toContain(line.span_id);

    // Its upload.completed webhook went out (its URL is checked for below, once later spans came).
    await receiver.waitFor(1);
  });

  test('a client that asks for 100-continue (curl does, for any large body) is traced too', async () => {
    const client = clientTrace();
    const data = randomBytesOf(MiB);
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${relay.url}/v1/videos`, {
        method: 'POST',
        headers: {
          ...auth(TOKEN),
          ...client.header(),
          'content-type': 'video/mp4',
          'content-length': String(data.length),
          expect: '100-continue',
        },
      });
      req.on('continue', () => req.end(data));
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
    });
    expect(status).toBe(201);
    const trace = await collector.waitFor((spans) => {
      const t = traceOf(spans, client.traceId);
      return serverSpans(t.spans, '/v1/videos').length === 1 && t.spans.some(isPart) && t;
    });
    expect(serverSpans(trace.spans, '/v1/videos')[0]!.parentSpanId).toBe(client.spanIds[0]);
  });

  test('a lost answer: the part’s retry is an event of its span, and the relay’s question to api.video is in the trace', async () => {
    // api.video keeps part 3 and its answer is lost; sent again it is "already uploaded", so the
    // relay asks api.video (GET /videos/{id}/status) what it holds.
    emulator.faults.add({ target: 'part', part: 3, loseAnswer: true });
    const client = clientTrace();
    const answer = await uploadMultipart(relay.url, 11 * MiB, {
      headers: { ...auth(TOKEN), ...client.header() },
    });
    expect(answer.status).toBe(201);
    const videoId = answer.body.videoId as string;
    const trace = await collector.waitFor((spans) => {
      const t = traceOf(spans, client.traceId);
      const done =
        serverSpans(t.spans, '/v1/videos').length === 1 &&
        clientCall(t.spans, 'GET', /\/status$/).length > 0;
      return done && t.orphans(client.spanIds).length === 0 && t;
    });
    const [server] = serverSpans(trace.spans, '/v1/videos');
    expect(server!.attributes['relay.upload.outcome']).toBe('completed');
    const last = trace.spans.filter(isPart).find((p) => p.attributes['relay.part.number'] === 3)!;
    expect(last.attributes).toMatchObject({
      'relay.part.last': true,
      'relay.part.attempts': 2,
      'relay.part.status_code': 400,
      'relay.part.outcome': 'failed',
      'error.type': '400',
    });
    expect(last.events).toEqual([
      {
        name: 'retry',
        attributes: expect.objectContaining({
          'relay.retry.attempt': 1,
          'relay.retry.reason': 'network',
        }),
      },
    ]);
    expect(trace.childrenOf(last)).toHaveLength(2); // both attempts
    const [status] = clientCall(trace.spans, 'GET', new RegExp(`^/videos/${videoId}/status$`));
    expect(status).toBeDefined();
    expect(trace.under(status!, server!)).toBe(true);
    expect(status!.attributes['http.response.status_code']).toBe(200);
  });

  test('tus in Redis, cut and resumed: each request in the client’s trace, with its Redis calls; values never in a span', async () => {
    const client = clientTrace();
    const data = randomBytesOf(12 * MiB);
    const filename = 'secret-holiday-name.mp4';
    const created = await request(relay.url)
      .post('/v1/uploads')
      .set(auth(TOKEN))
      .set(TUS)
      .set(client.header())
      .set('Upload-Length', String(data.length))
      .set('Upload-Metadata', `filename ${Buffer.from(filename).toString('base64')}`);
    expect(created.status).toBe(201);
    const path = created.headers.location!;

    // The first PATCH brings 7 MiB and is cut once api.video has acknowledged part 1.
    const cut = new AbortController();
    async function* firstBytes() {
      for (let at = 0; at < 7 * MiB; at += MiB) yield data.subarray(at, at + MiB);
      await once(cut.signal, 'abort');
    }
    const first = patch(relay.url, path, 0, firstBytes(), TOKEN, client.header(), cut.signal).catch(
      (err: unknown) => err,
    );
    await collector.waitFor((spans) =>
      spans.some(
        (s) => s.traceId === client.traceId && isPart(s) && s.attributes['relay.part.number'] === 1,
      ),
    );
    cut.abort();
    expect(await first).toMatchObject({ name: 'AbortError' });

    const head = await request(relay.url).head(path).set(auth(TOKEN)).set(TUS).set(client.header());
    const offset = Number(head.headers['upload-offset']);
    expect(offset).toBeGreaterThanOrEqual(5 * MiB);
    const rest = await patch(
      relay.url,
      path,
      offset,
      data.subarray(offset),
      TOKEN,
      client.header(),
    );
    expect([rest.status, rest.offset]).toEqual([204, String(data.length)]);
    const videoId = rest.headers['upload-video-id'] as string;
    expect(inspectVideo(emulator, videoId)).toMatchObject({
      completed: true,
      sha256: sha256(data),
    });

    const trace = await collector.waitFor((spans) => {
      const t = traceOf(spans, client.traceId);
      const servers = t.spans.filter((s) => s.kind === 'server');
      const completed = servers.some((s) => s.attributes['relay.upload.outcome'] === 'completed');
      return servers.length === 4 && completed && t.orphans(client.spanIds).length === 0 && t;
    });
    // Each request's server span is the child of that request's own client span.
    const servers = trace.spans.filter((s) => s.kind === 'server');
    expect(servers.map((s) => s.parentSpanId).sort()).toEqual([...client.spanIds].sort());
    for (const server of servers)
      expect(server.attributes).toMatchObject({
        'relay.route': 'resumable',
        'relay.upload_id': path.split('/').pop(),
      });
    const parts = trace.spans.filter(isPart);
    expect(new Set(parts.map((p) => p.attributes['relay.part.number']))).toEqual(
      new Set([1, 2, 3]),
    );
    expect(parts.every((p) => p.attributes['relay.part.outcome'] === 'acknowledged')).toBe(true);

    // The session store's Redis calls, inside the requests, by command and key only.
    const redis = trace.spans.filter(isRedis);
    expect(redis.length).toBeGreaterThan(0);
    for (const server of servers) expect(redis.some((r) => trace.under(r, server))).toBe(true);
    const statements = redis.map((r) =>
      String(r.attributes['db.statement'] ?? r.attributes['db.query.text']),
    );
    expect(statements.some((s) => s.startsWith('GET '))).toBe(true);
    const stored = JSON.stringify(collector.bodies);
    expect(stored).not.toContain(Buffer.from(filename).toString('base64'));
    expect(stored).not.toContain(filename);

    const line = await uploadFinishedLine(relay, videoId);
    expect(line.trace_id).toBe(client.traceId);
  });

  test('POST /upload?token= in chunks: a span per chunk in the client’s trace; the token is in no span', async () => {
    const { token } = await mintUploadToken(relay.url, TOKEN);
    const client = clientTrace();
    const data = randomBytesOf(12 * MiB);
    let videoId: string | undefined;
    for (const [from, to] of [
      [0, 5 * MiB - 1],
      [5 * MiB, 10 * MiB - 1],
      [10 * MiB, data.length - 1],
    ] as const) {
      const chunk = data.subarray(from, to + 1);
      const form = multipartAround(Readable.from([chunk]), chunk.length, {
        fields: videoId ? [['videoId', videoId]] : [],
        filename: 'clip.mp4',
      });
      const res = await undici(`${relay.url}/upload?token=${token}`, {
        method: 'POST',
        headers: {
          'content-type': form.contentType,
          'content-length': String(form.length),
          'content-range': `bytes ${from}-${to}/${data.length}`,
          ...client.header(),
        },
        body: form.body,
      });
      const body = (await res.body.json()) as { videoId: string };
      expect(res.statusCode).toBe(201);
      videoId = body.videoId;
    }
    expect(inspectVideo(emulator, videoId!)).toMatchObject({
      completed: true,
      sha256: sha256(data),
    });

    const trace = await collector.waitFor((spans) => {
      const t = traceOf(spans, client.traceId);
      const done =
        serverSpans(t.spans, '/upload').length === 3 && t.spans.filter(isPart).length === 3;
      return done && t.orphans(client.spanIds).length === 0 && t;
    });
    const servers = serverSpans(trace.spans, '/upload');
    for (const server of servers) {
      expect(server.attributes).toMatchObject({
        'relay.route': 'upload-token',
        'url.query': 'token=[REDACTED]',
      });
    }
    const parts = trace.spans.filter(isPart).sort(byPart);
    expect(
      parts.map((p) => [p.attributes['relay.part.number'], p.attributes['relay.part.size']]),
    ).toEqual([
      [1, 5 * MiB],
      [2, 5 * MiB],
      [3, 2 * MiB],
    ]);
    // Each chunk's part is in that chunk's request.
    for (const [i, part] of parts.entries())
      expect(
        trace.under(
          part,
          servers.find((s) => s.parentSpanId === client.spanIds[i])!,
        ),
      ).toBe(true);

    // Nowhere in anything exported: the upload token, the static token, the API key, and the
    // webhook URL of the deliveries of every upload so far (spans are exported in the order they
    // end: a delivery's would have come before this test's).
    expect(receiver.received.length).toBeGreaterThanOrEqual(3);
    const exported = collector.bodies.join('\n');
    expect(exported).not.toContain(token);
    expect(exported).not.toContain(token.slice(3)); // without its `to_`
    expect(exported).not.toContain(TOKEN);
    expect(exported).not.toContain(TEST_API_KEY);
    expect(exported).not.toContain(WEBHOOK_PATH_SECRET);
    // Deliveries are the relay's background work: in no upload's trace.
    expect(clientCall(collector.spans, 'POST', /^\/hooks\//)).toEqual([]);
  });

  test('a token spelled otherwise in the URL (%74oken=, %5F) is not in the span either', async () => {
    const { token } = await mintUploadToken(relay.url, TOKEN);
    const spelled = `to%5F${token.slice(3)}`;
    const client = clientTrace();
    const res = await undici(`${relay.url}/upload?%74oken=${spelled}&x=1`, {
      method: 'POST',
      headers: { 'content-type': 'multipart/form-data; boundary=x', ...client.header() },
      body: '--x--\r\n',
    });
    await res.body.dump();
    const [server] = await collector.waitFor((spans) => {
      const found = serverSpans(traceOf(spans, client.traceId).spans, '/upload');
      return found.length > 0 && found;
    });
    expect(server!.attributes['url.query']).toBe('%74oken=[REDACTED]&x=1');
    const exported = collector.bodies.join('\n');
    expect(exported).not.toContain(token.slice(3));
  });
});

test('OTLP http/protobuf: the same trace decodes, and OpenTelemetry is loaded', async () => {
  const collector = await startCollector();
  const dir = await mkdtemp(join(tmpdir(), 'loaded-'));
  let relay: RelayProcess | undefined;
  try {
    relay = await startRelayProcess({
      ...relayEnv(emulator, collector, { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' }),
      NODE_OPTIONS: `--import ${PROBE}`,
      LOADED_PACKAGES_FILE: join(dir, 'packages.json'),
    });
    expect(relay.output()).toContain(`traces: OpenTelemetry, sent to ${collector.url}`);
    const client = clientTrace();
    const answer = await uploadMultipart(relay.url, 6 * MiB, {
      headers: { ...auth(TOKEN), ...client.header() },
    });
    expect(answer.status).toBe(201);
    const trace = await collector.waitFor((spans) => {
      const t = traceOf(spans, client.traceId);
      const done =
        serverSpans(t.spans, '/v1/videos').length === 1 && t.spans.filter(isPart).length === 2;
      return done && t.orphans(client.spanIds).length === 0 && t;
    });
    expect([...collector.contentTypes]).toEqual(['application/x-protobuf']);
    expect(serverSpans(trace.spans, '/v1/videos')[0]!.parentSpanId).toBe(client.spanIds[0]);
    expect(
      trace.spans
        .filter(isPart)
        .sort(byPart)
        .map((p) => p.attributes['relay.part.size']),
    ).toEqual([5 * MiB, MiB]);
    // Without OTEL_SERVICE_NAME, the relay's name (not OpenTelemetry's unknown_service).
    expect(trace.spans[0]!.resource['service.name']).toBe('apivideo-upload-relay');
    expect(await relay.stop('SIGTERM')).toBe(0);
    const loaded = await loadedPackages(dir);
    expect(loaded['@opentelemetry/sdk-node']).toEqual(['relay']);
    expect(loaded).toHaveProperty('express');
  } finally {
    await relay?.stop('SIGKILL');
    await collector.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('without OTEL_EXPORTER_OTLP_ENDPOINT no OpenTelemetry module is loaded, and uploads work', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'loaded-'));
  let relay: RelayProcess | undefined;
  try {
    relay = await startRelayProcess({
      APIVIDEO_API_KEY: TEST_API_KEY,
      APIVIDEO_BASE_URL: emulator.url,
      RELAY_API_TOKENS: TOKEN,
      REDIS_URL: 'redis://127.0.0.1:6379',
      REDIS_KEY_PREFIX: testPrefix(),
      LOG_LEVEL: 'info',
      NODE_OPTIONS: `--import ${PROBE}`,
      LOADED_PACKAGES_FILE: join(dir, 'packages.json'),
    });
    expect(relay.output()).toContain('traces: off');
    const client = clientTrace();
    const answer = await uploadMultipart(relay.url, 6 * MiB, {
      headers: { ...auth(TOKEN), ...client.header() },
    });
    expect(answer.status).toBe(201);
    const tus = await request(relay.url)
      .post('/v1/uploads')
      .set(auth(TOKEN))
      .set(TUS)
      .set('Upload-Length', String(MiB));
    expect(tus.status).toBe(201);
    const done = await patch(relay.url, tus.headers.location!, 0, randomBytesOf(MiB), TOKEN);
    expect(done.status).toBe(204);
    const line = await uploadFinishedLine(relay, answer.body.videoId as string);
    expect(line).not.toHaveProperty('trace_id');
    expect(await relay.stop('SIGTERM')).toBe(0);
    const loaded = await loadedPackages(dir);
    // The probe saw the relay's packages (so it would have seen OpenTelemetry's).
    for (const name of ['express', 'ioredis', 'pino', 'undici'])
      expect(loaded[name]).toContain('relay');
    // Only the API, which prom-client has always required for its exemplars (before traces
    // existed here); nothing of the SDK or the instrumentations, and nothing the relay required.
    const otel = Object.entries(loaded).filter(([name]) => name.startsWith('@opentelemetry/'));
    expect(otel).toEqual([['@opentelemetry/api', ['prom-client']]]);
  } finally {
    await relay?.stop('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});

/** What the probe (test/helpers/loaded-packages.mjs) wrote: each package, and who required it. */
async function loadedPackages(dir: string): Promise<Record<string, string[]>> {
  return JSON.parse(await readFile(join(dir, 'packages.json'), 'utf8')) as Record<string, string[]>;
}

function byPart(a: CollectedSpan, b: CollectedSpan): number {
  return Number(a.attributes['relay.part.number']) - Number(b.attributes['relay.part.number']);
}
