/**
 * Issue #24, no 500 and no bare answer for any client input: generated requests (headers, ranges,
 * tus metadata, query strings, broken or oversized bodies, every principal) thrown at every route
 * of a real relay over raw sockets, against the emulator. Whatever comes in:
 * - no 5xx (the emulator is healthy and requests go one at a time, so no upstream or availability
 *   code can be the right answer here);
 * - every 4xx is problem+json with a known `code`, and the request id in the body is the header's;
 * - a refusal leaves nothing at api.video: a container it made is deleted, and a refusal decided
 *   on the headers never reached api.video at all;
 * - no error line (an unexpected error, a stack) is logged.
 *
 * The seed is fixed so a run is repeatable; FUZZ_SEED and FUZZ_RUNS change it. On a failure,
 * fast-check prints the seed, the shrunk counterexample and its path, and the test prints the
 * raw request and answers.
 */
import { connect } from 'node:net';
import fc from 'fast-check';
import { SignJWT } from 'jose';
import type { RunningEmulator } from '../../src/emulator/app';
import { ERROR_TABLE } from '../../src/kernel/errors';
import { Lifecycle } from '../../src/kernel/lifecycle';
import type { UploadOutcome } from '../../src/engine/outcome';
import { startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { mintUploadToken } from '../helpers/upload-tokens';

const SEED = Number(process.env.FUZZ_SEED ?? 24);
const RUNS = Number(process.env.FUZZ_RUNS ?? 1000);

const BACKEND = 'fuzz-backend-token-0123456789';
const JWT_SECRET = 'fuzz-jwt-secret-of-at-least-32-characters';
let emulator: RunningEmulator;
let relay: TestRelay;
let uploadToken: string;
let sessionPath: string;
let jwtUser: string;
let jwtWebhooks: string;
/**
 * Tells when no upload is in progress: an answer the server wrote itself (a body that broke
 * mid-upload) can come before the app has cleaned up, and what it does then belongs to that
 * request, not to the next one.
 */
class WatchedLifecycle extends Lifecycle {
  private readonly waiters: Array<() => void> = [];

  override track(stop: AbortController): () => void {
    const untrack = super.track(stop);
    return () => {
      untrack();
      if (this.inProgress === 0) for (const wake of this.waiters.splice(0)) wake();
    };
  }

  whenIdle(): Promise<void> {
    if (this.inProgress === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}
const lifecycle = new WatchedLifecycle();
const outcomes = new Map<string, UploadOutcome>();
const waiting = new Map<string, () => void>();

beforeAll(async () => {
  emulator = await startTestEmulator();
  relay = await startTestRelay(emulator, {
    env: {
      RELAY_API_TOKENS: BACKEND,
      RELAY_JWT_SECRET: JWT_SECRET,
      LOG_LEVEL: 'info',
      // Small, so generated bodies can be over it without moving megabytes.
      UPLOAD_MAX_FILE_SIZE: '64KiB',
      UPLOAD_MAX_SESSIONS_PER_CLIENT: '100000',
    },
    deps: { lifecycle },
    outcomeSinks: [
      {
        record: async (outcome) => {
          if (!outcome.videoId) return;
          outcomes.set(outcome.videoId, outcome);
          waiting.get(outcome.videoId)?.();
        },
      },
    ],
  });
  uploadToken = (await mintUploadToken(relay.url, BACKEND, { maxUses: 1000 })).token;
  const created = await rawExchange(
    `POST /v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${BACKEND}\r\n` +
      'Tus-Resumable: 1.0.0\r\nUpload-Length: 1000\r\nConnection: close\r\n\r\n',
  );
  sessionPath = new URL(answersIn(created, 'POST')[0]!.headers.location!, relay.url).pathname;
  const key = new TextEncoder().encode(JWT_SECRET);
  const jwt = (claims: Record<string, unknown>) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('fuzz-user')
      .setExpirationTime('1h')
      .sign(key);
  jwtUser = await jwt({});
  jwtWebhooks = await jwt({ scope: 'webhooks:test' });
});
afterAll(async () => {
  await relay.close();
  await emulator.close();
});

/** Everything the relay sends until it closes the connection. */
function rawExchange(request: string | Buffer): Promise<string> {
  const { port } = new URL(relay.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    let received = '';
    // A relay that never answers nor closes fails the test here, not by the suite's timeout.
    const timer = setTimeout(
      () => socket.destroy(new Error('no answer and no close in 10 s')),
      10_000,
    );
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(received);
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      // The relay may cut a connection it refused while we still write: what it sent counts.
      if ((err as NodeJS.ErrnoException).code === 'ECONNRESET' || err.message.startsWith('EPIPE'))
        return;
      reject(err);
    });
    socket.on('connect', () => socket.end(request));
  });
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** The answers on a connection, in order; a HEAD's has no body whatever Content-Length says. */
function answersIn(text: string, method: string): Answer[] {
  const answers: Answer[] = [];
  let rest = text;
  while (rest.startsWith('HTTP/')) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const headers = Object.fromEntries(
      lines.map((l) => [
        l.slice(0, l.indexOf(':')).toLowerCase(),
        l.slice(l.indexOf(':') + 1).trim(),
      ]),
    );
    const status = Number(statusLine!.split(' ')[1]);
    const bodyless = status < 200 || (method === 'HEAD' && answers.length === 0);
    const length = bodyless ? 0 : Number(headers['content-length'] ?? 0);
    answers.push({ status, headers, body: rest.slice(end + 4, end + 4 + length) });
    rest = rest.slice(end + 4 + length);
  }
  return answers;
}

// ---- What a request is made of -----------------------------------------------------------------

const b64 = (text: string) => Buffer.from(text).toString('base64');
const shortText = fc.string({ maxLength: 12 });
/** A header value: printable, odd, or with control characters (never CR or LF, which end it). */
const headerValue = fc.oneof(
  { weight: 6, arbitrary: shortText },
  { weight: 3, arbitrary: fc.constantFrom('', ' ', 'null', 'undefined', '0', '-1', '1e3', '0x10') },
  {
    weight: 1,
    arbitrary: fc.string({ unit: 'binary', maxLength: 20 }).map((s) => s.replace(/[\r\n]/g, '')),
  },
);
/** An optional header that is there one time in `1 + absent`. */
const sometimes = <T>(arbitrary: fc.Arbitrary<T>, absent = 4) =>
  fc.oneof({ weight: absent, arbitrary: fc.constant(null) }, { weight: 1, arbitrary });
const integerText = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: -5, max: 70_000 }).map(String) },
  fc.constantFrom(
    '',
    'abc',
    ' 5',
    '5 ',
    '+5',
    '1.5',
    '99999999999999999999',
    String(2 ** 53),
    '-0',
  ),
);

const contentRange = fc.oneof(
  fc
    .tuple(integerText, integerText, integerText)
    .map(([from, to, size]) => `bytes ${from}-${to}/${size}`),
  fc.tuple(integerText, fc.oneof(integerText, fc.constant('*'))).map(([n, m]) => `part ${n}/${m}`),
  fc.constantFrom('bytes 0-99/100', 'bytes 0-0/1', 'part 1/1', 'part 1/*', 'bytes */100'),
  headerValue,
);

const metadataKey = fc.oneof(
  fc.constantFrom('title', 'description', 'tags', 'metadata', 'playerId', 'public', 'filename'),
  fc.constantFrom('videoId', 'filetype', '', 'x', 'title title'),
  fc.stringMatching(/^[a-z]{1,8}$/),
);
const metadataValue = fc.oneof(
  { weight: 8, arbitrary: shortText.map(b64) },
  fc.constant(b64('true')),
  fc.constant(b64('vi0000000000000000000000')),
  fc.constant(b64('{"a":"b"}')),
  fc.constantFrom('abc', '====', '%%%', '!!', 'YQ', 'YQ=', 'Y===', '  '),
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 20_000 }).map((n) => `@b64x${n}@`) },
);
/** Pairs with odd base64, keys given twice, keys without a value, huge values. */
const uploadMetadata = fc
  .array(fc.tuple(metadataKey, fc.option(metadataValue)), { maxLength: 5 })
  .chain((pairs) =>
    fc
      .boolean()
      .map((twice) =>
        [...pairs, ...(twice && pairs[0] ? [pairs[0]] : [])]
          .map(([k, v]) => (v === null ? k : `${k} ${v}`))
          .join(','),
      ),
  );

const queryKey = fc.oneof(
  fc.constantFrom('title', 'description', 'tags', 'public', 'filename', 'videoId', 'token'),
  fc.constantFrom('metadata', 'playerId', 'mp4Support', 'a', '', '%zz', 'title[]', 'tok%65n'),
);
const queryValue = fc.oneof(
  { weight: 8, arbitrary: shortText.map(encodeURIComponent) },
  fc.constantFrom('', '%', '%zz', '%E0%A4%A', 'true', 'vi0000000000000000000000', '..%2F..'),
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 5000 }).map((n) => `@x${n}@`) },
);
const query = fc.oneof(
  fc.constant(''),
  fc
    .array(fc.tuple(queryKey, queryValue), { maxLength: 6 })
    .map((pairs) => '?' + pairs.map(([k, v]) => `${k}=${v}`).join('&')),
  fc.constantFrom('?', '?&&', '?=', '?token', '?a=1&a=2&a=3'),
);

/** A body as a small description (a readable counterexample); `bodyBytes` builds it. */
type BodySpec =
  | { kind: 'empty' }
  | { kind: 'random'; bytes: number[] }
  | { kind: 'filled'; length: number }
  | { kind: 'json'; text: string }
  | {
      kind: 'multipart';
      boundary: string;
      fields: Array<[string, string]>;
      file: number | null;
      fileName: string;
      after: boolean;
      cut: number | null;
      headerBoundary: string | null;
    };

const boundaryText = fc.stringMatching(/^[A-Za-z0-9'()+_,./:=?-]{1,40}$/);
const multipart = fc.record({
  kind: fc.constant('multipart' as const),
  boundary: boundaryText,
  fields: fc.array(fc.tuple(fc.oneof(metadataKey, queryKey), shortText), { maxLength: 3 }),
  file: fc.option(fc.integer({ min: 0, max: 70_000 })),
  fileName: fc.constantFrom('file', 'video', 'clip.mp4', ''),
  after: fc.boolean(),
  // Where a truncated body stops, as a share of the whole.
  cut: fc.option(fc.double({ min: 0, max: 1, noNaN: true })),
  // A Content-Type boundary other than the body's.
  headerBoundary: fc.option(boundaryText),
});

const body: fc.Arbitrary<BodySpec> = fc.oneof(
  fc.constant({ kind: 'empty' as const }),
  fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 200 }).map((bytes) => ({
    kind: 'random' as const,
    bytes,
  })),
  fc.integer({ min: 1, max: 70_000 }).map((length) => ({ kind: 'filled' as const, length })),
  multipart,
  fc.json({ maxDepth: 2 }).map((text) => ({ kind: 'json' as const, text })),
);

function bodyBytes(spec: BodySpec): { bytes: Buffer; contentType?: string } {
  if (spec.kind === 'empty') return { bytes: Buffer.alloc(0) };
  if (spec.kind === 'random') return { bytes: Buffer.from(spec.bytes) };
  if (spec.kind === 'filled') return { bytes: Buffer.alloc(spec.length, 1) };
  if (spec.kind === 'json') return { bytes: Buffer.from(spec.text) };
  const { boundary, fields, file, fileName, after, cut, headerBoundary } = spec;
  const field = ([name, value]: [string, string]) =>
    `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  const parts: Buffer[] = [];
  if (!after) parts.push(Buffer.from(fields.map(field).join('')));
  if (file !== null) {
    parts.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${fileName}"; filename="clip.mp4"\r\n` +
          'Content-Type: video/mp4\r\n\r\n',
      ),
      Buffer.alloc(file, 7),
      Buffer.from('\r\n'),
    );
  }
  if (after) parts.push(Buffer.from(fields.map(field).join('')));
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  const whole = Buffer.concat(parts);
  return {
    bytes: cut === null ? whole : whole.subarray(0, Math.floor(whole.length * cut)),
    contentType: `multipart/form-data; boundary=${headerBoundary ?? boundary}`,
  };
}

/** How the body is framed: honestly, or not. */
const framing = fc.oneof(
  { weight: 12, arbitrary: fc.constant({ kind: 'exact' as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'none' as const }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'chunked' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'broken-chunked' as const }) },
  {
    weight: 2,
    arbitrary: fc.integer({ min: 1, max: 100 }).map((by) => ({ kind: 'short' as const, by })),
  },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 1, max: 100 }).map((by) => ({ kind: 'long' as const, by })),
  },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom('1099511627776', '99999999999999999999', 'abc', '-1', '1, 2')
      .map((value) => ({ kind: 'declared' as const, value })),
  },
);

const contentType = fc.oneof(
  fc.constant(undefined),
  fc.constantFrom(
    'video/mp4',
    'application/octet-stream',
    'application/offset+octet-stream',
    'application/json',
    'multipart/form-data',
    'multipart/form-data; boundary=',
    'multipart/form-data; boundary=x; boundary=y',
    'text/plain',
  ),
  headerValue,
);

type Principal = 'none' | 'backend' | 'garbage' | 'upload-token' | 'jwt' | 'jwt-webhooks';
const principal = fc.oneof(
  { weight: 4, arbitrary: fc.constant<Principal>('backend') },
  { weight: 3, arbitrary: fc.constant<Principal>('upload-token') },
  { weight: 1, arbitrary: fc.constantFrom<Principal>('none', 'garbage', 'jwt', 'jwt-webhooks') },
);

const uploadId = fc.oneof(
  fc.constant('SESSION'),
  fc.constantFrom('x', '..', '%2e%2e', 'a%2Fb', '0'.repeat(32), 'SESSION/extra', 'SESSION%00'),
  fc.stringMatching(/^[A-Za-z0-9_-]{1,200}$/),
);
const tokenInPath = fc.oneof(
  fc.constantFrom('TOKEN', 'utk_0000000000000000', 'to_x', 'TOKEN%00', '%74o_x'),
  fc.stringMatching(/^[A-Za-z0-9_%-]{1,60}$/),
);
const tokenInQuery = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('TOKEN', 'TOKEN-ENCODED') },
  fc.constantFrom('', 'to_x', 'garbage'),
  fc.stringMatching(/^[A-Za-z0-9_%-]{0,60}$/),
);

const route = fc.oneof(
  fc.constant({ method: 'POST', path: '/v1/videos' }),
  fc.constant({ method: 'POST', path: '/v1/uploads' }),
  fc
    .tuple(fc.constantFrom('HEAD', 'PATCH', 'DELETE', 'GET', 'POST', 'OPTIONS'), uploadId)
    .map(([method, id]) => ({ method, path: `/v1/uploads/${id}` })),
  tokenInQuery.map((t) => ({ method: 'POST', path: `/upload?token=${t}` })),
  fc.constant({ method: 'POST', path: '/v1/upload-tokens' }),
  fc
    .tuple(fc.constantFrom('GET', 'DELETE'), tokenInPath)
    .map(([method, t]) => ({ method, path: `/v1/upload-tokens/${t}` })),
  fc.constant({ method: 'POST', path: '/v1/webhooks/test' }),
  fc
    .tuple(fc.constantFrom('GET', 'POST'), fc.constantFrom('vi0000000000000000000000', '..', 'x'))
    .map(([method, id]) => ({ method, path: `/v1/videos/${id}` })),
);

const request = fc.record({
  route,
  query,
  principal,
  body,
  framing,
  contentType,
  tus: sometimes(
    fc.oneof(
      { weight: 6, arbitrary: fc.constant('1.0.0') },
      { weight: 1, arbitrary: fc.constantFrom('0.2.2', '', '1.0.0, 0.2.2') },
    ),
    1,
  ),
  uploadLength: sometimes(integerText, 1),
  uploadOffset: sometimes(integerText, 1),
  deferLength: sometimes(fc.constantFrom('1', '0', 'x')),
  uploadMetadata: sometimes(uploadMetadata, 1),
  contentRange: sometimes(contentRange, 1),
  override: sometimes(fc.constantFrom('PATCH', 'DELETE', 'HEAD', 'GET', 'x')),
  expect: sometimes(fc.constantFrom('100-continue', '100-continue', '100-Continue', 'x')),
  extra: fc.array(fc.tuple(fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/), headerValue), {
    maxLength: 2,
  }),
});
type Generated = typeof request extends fc.Arbitrary<infer T> ? T : never;

/** Fills in what the generated text names: the live session and token, long runs of `x`. */
function substitute(text: string): string {
  return text
    .replace(/@b64x(\d+)@/g, (_m, n: string) => b64('x'.repeat(Number(n))))
    .replace(/@x(\d+)@/g, (_m, n: string) => 'x'.repeat(Number(n)))
    .replace('SESSION', sessionPath.split('/').at(-1)!)
    .replace('TOKEN-ENCODED', `to%5F${uploadToken.slice(3)}`)
    .replace('TOKEN', uploadToken);
}

/** The generated request as bytes on the wire. */
function wire(r: Generated): { text: Buffer; method: string } {
  const headers: Array<[string, string]> = [['Host', 'relay.test']];
  const bearer = {
    none: undefined,
    backend: BACKEND,
    garbage: 'not-a-token-0123456789',
    'upload-token': uploadToken,
    jwt: jwtUser,
    'jwt-webhooks': jwtWebhooks,
  }[r.principal];
  if (bearer) headers.push(['Authorization', `Bearer ${bearer}`]);
  const built = bodyBytes(r.body);
  const type = built.contentType ?? r.contentType;
  if (type !== undefined) headers.push(['Content-Type', type]);
  if (r.tus !== null) headers.push(['Tus-Resumable', r.tus]);
  if (r.uploadLength !== null) headers.push(['Upload-Length', r.uploadLength]);
  if (r.uploadOffset !== null) headers.push(['Upload-Offset', r.uploadOffset]);
  if (r.deferLength !== null) headers.push(['Upload-Defer-Length', r.deferLength]);
  if (r.uploadMetadata !== null) headers.push(['Upload-Metadata', r.uploadMetadata]);
  if (r.contentRange !== null) headers.push(['Content-Range', r.contentRange]);
  if (r.override !== null) headers.push(['X-HTTP-Method-Override', r.override]);
  if (r.expect !== null) headers.push(['Expect', r.expect]);
  headers.push(...r.extra);
  const bytes = built.bytes;
  let payload = bytes;
  const f = r.framing;
  if (f.kind === 'exact') headers.push(['Content-Length', String(bytes.length)]);
  if (f.kind === 'short') headers.push(['Content-Length', String(bytes.length + f.by)]);
  if (f.kind === 'long') headers.push(['Content-Length', String(Math.max(0, bytes.length - f.by))]);
  if (f.kind === 'declared') headers.push(['Content-Length', f.value]);
  if (f.kind === 'chunked' || f.kind === 'broken-chunked') {
    headers.push(['Transfer-Encoding', 'chunked']);
    const chunks = bytes.length > 0 ? [`${bytes.length.toString(16)}\r\n`] : [];
    payload = Buffer.concat([
      Buffer.from(chunks.join('')),
      bytes,
      Buffer.from(bytes.length > 0 ? '\r\n' : ''),
      Buffer.from(f.kind === 'chunked' ? '0\r\n\r\n' : 'zz\r\n'),
    ]);
  }
  headers.push(['Connection', 'close']);
  const method = r.route.method;
  const path = substitute(r.route.path) + r.query;
  const head = `${method} ${path} HTTP/1.1\r\n${headers.map(([k, v]) => `${k}: ${substitute(v)}`).join('\r\n')}\r\n\r\n`;
  return { text: Buffer.concat([Buffer.from(head, 'latin1'), payload]), method };
}

/** Codes answered from the headers alone: such a refusal has not asked api.video anything. */
const BEFORE_ANY_UPSTREAM_CALL = new Set([
  'unauthorized',
  'route_not_found',
  'unsupported_media_type',
  'invalid_tus_header',
  'tus_version_unsupported',
  'upload_token_unknown',
  'upload_token_revoked',
  'upload_token_expired',
  'upload_token_used_up',
  'upload_token_not_found',
  'upload_not_found',
  'invalid_video_id',
  'headers_too_large',
  'expectation_failed',
  'insufficient_scope',
  'webhooks_not_configured',
  'too_many_webhook_tests',
]);

function cleanedUp(videoId: string): Promise<void> {
  if (outcomes.has(videoId) || emulator.videos.inspect(videoId)?.deleted) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${videoId} never cleaned up`)), 10_000);
    waiting.set(videoId, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function check(r: Generated): Promise<void> {
  const { text, method } = wire(r);
  const videosBefore = emulator.videos.all().length;
  const upstreamBefore = emulator.requestLog.length;
  const errorsBefore = relay.logs().filter((l) => (l.level as number) >= 50).length;
  const raw = await rawExchange(text);
  // FUZZ_DEBUG=1: one line per request, to see what the generators reach.
  if (process.env.FUZZ_DEBUG)
    console.log(
      JSON.stringify([
        r.route,
        r.principal,
        r.body.kind,
        r.framing,
        raw.slice(0, 12),
        /"code":"(\w+)"/.exec(raw)?.[1],
      ]),
    );
  await lifecycle.whenIdle();
  const answers = answersIn(raw, method).filter((a) => a.status >= 200);
  const context = () =>
    `request:\n${text.toString('latin1').slice(0, 2000)}\nanswers:\n${raw.slice(0, 2000)}`;
  try {
    expect(answers.length).toBeGreaterThan(0);
    for (const answer of answers) {
      expect(answer.status).toBeLessThan(500);
      if (answer.status < 400) continue;
      expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
      const id = answer.headers['x-request-id'];
      expect(id).toBeTruthy();
      // A HEAD's answer has no body to hold the problem.
      if (method === 'HEAD' && answer === answers[0]) continue;
      const problem = JSON.parse(answer.body) as { code: string; requestId: string };
      expect(Object.keys(ERROR_TABLE)).toContain(problem.code);
      expect(problem.requestId).toBe(id);
    }
    const refusals = answers.filter((a) => a.status >= 400);
    if (refusals.length === answers.length) {
      const made = emulator.videos.all().slice(videosBefore);
      for (const video of made) await cleanedUp(video.videoId);
      for (const video of made) expect(emulator.videos.inspect(video.videoId)?.deleted).toBe(true);
      const first =
        method === 'HEAD' ? undefined : (JSON.parse(refusals[0]!.body) as { code: string });
      if (first && BEFORE_ANY_UPSTREAM_CALL.has(first.code)) {
        expect(made).toEqual([]);
        // Reads are left out: a GET /v1/videos/{id} whose body broke after its headers may still
        // be asking api.video when the refusal is written, and lands in the next request's slice.
        const writes = emulator.requestLog.slice(upstreamBefore).filter((e) => e.method !== 'GET');
        expect(writes).toEqual([]);
      }
    }
    expect(relay.logs().filter((l) => (l.level as number) >= 50).length).toBe(errorsBefore);
  } catch (err) {
    lastFailure = context();
    throw err;
  }
}

/** The last failing request: while shrinking, the last to fail is the counterexample reported. */
let lastFailure = '';

test('generated requests at every route: no 5xx, problem+json with a code and the request id, nothing left upstream', async () => {
  try {
    await fc.assert(fc.asyncProperty(request, check), {
      seed: SEED,
      numRuns: RUNS,
      verbose: 1,
      // Bounded whatever the box: a slow run checks fewer requests rather than timing out.
      interruptAfterTimeLimit: 40_000,
    });
  } catch (err) {
    console.log(`fuzz seed ${SEED}: the shrunk counterexample on the wire\n${lastFailure}`);
    throw err;
  }
});
