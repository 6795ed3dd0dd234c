/**
 * The attack catalogue (issue #13), replayed over real sockets against a real relay and emulator.
 * Each table row is one attack seen working on the relay before; each must stay refused.
 *
 * To add a table: put the rows in a `const` next to the others, then one `test.each` (or a loop in
 * one test when the rows share expensive set-up) under a `describe` named after what is attacked.
 * `as` (below) gives any principal's headers; `upstreamSince(mark)` is what api.video was asked
 * since `mark = emulator.requestLog.length`, method and raw path.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { SignJWT, UnsecuredJWT } from 'jose';
import { Server as ProxyServer } from 'proxy-chain';
import { upstreamDispatcher } from '../../src/apivideo/dispatcher';
import { ApiVideoInvalidIdError } from '../../src/apivideo/errors';
import { ConfigError, loadConfig } from '../../src/kernel/config';
import type { RunningEmulator } from '../../src/emulator/app';
import { LINGER } from '../../src/http/linger';
import { OWNER_METADATA_KEY, ownerMark } from '../../src/engine/owner';
import { toRelayError } from '../../src/engine/upstream-failure';
import { MiB } from '../helpers/data';
import { TEST_API_KEY, inspectVideo, startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay, type TestRelayOptions } from '../helpers/relay';
import { uploadRaw } from '../helpers/upload';

const TOKEN_ALICE = 'token-alice-0123456789abcdef';
const TOKEN_BOB = 'token-bob-0123456789abcdefgh';
const JWT_SECRET = 'a-shared-secret-of-at-least-32-characters!';
const JWT_KEY = new TextEncoder().encode(JWT_SECRET);
/** The principal string of Alice's static token, as client-auth derives it. */
const ALICE_PRINCIPAL = `token:${createHash('sha256').update(TOKEN_ALICE).digest('hex').slice(0, 12)}`;
/** Well-shaped ids api.video does not know. */
const UNKNOWN_ID = 'viUnknown0000000000000';

let emulator: RunningEmulator;
let relay: TestRelay;
const started: TestRelay[] = [];

beforeAll(async () => {
  emulator = await startTestEmulator();
  relay = await relayWith({
    RELAY_API_TOKENS: `${TOKEN_ALICE},${TOKEN_BOB}`,
    RELAY_JWT_SECRET: JWT_SECRET,
  });
});
afterAll(async () => {
  for (const r of started) await r.close();
  await emulator.close();
});

async function relayWith(env: Record<string, string>, options: TestRelayOptions = {}) {
  const r = await startTestRelay(emulator, { ...options, env: { LOG_LEVEL: 'warn', ...env } });
  started.push(r);
  return r;
}

function jwt(claims: { sub?: string; exp?: string | null; nbf?: string }, alg = 'HS256') {
  const token = new SignJWT({}).setProtectedHeader({ alg });
  if (claims.sub !== undefined) token.setSubject(claims.sub);
  if (claims.exp !== null) token.setExpirationTime(claims.exp ?? '5m');
  if (claims.nbf !== undefined) token.setNotBefore(claims.nbf);
  return token.sign(JWT_KEY);
}

/** Headers for a principal of the main relay. */
const as = {
  alice: { authorization: `Bearer ${TOKEN_ALICE}` },
  bob: { authorization: `Bearer ${TOKEN_BOB}` },
  nobody: {} as Record<string, string>,
  jwt: async (sub: string) => ({ authorization: `Bearer ${await jwt({ sub })}` }),
};

const upstreamSince = (mark: number) => emulator.requestLog.slice(mark);

interface Answer {
  status: number;
  body: Record<string, unknown>;
  text: string;
}

/** A request whose path goes on the wire exactly as written (undici and fetch normalise `..`). */
function raw(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: hostname, port, method, path, headers, agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          let body: Record<string, unknown> = {};
          try {
            body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
          } catch {
            // not JSON: the test reads `text`
          }
          resolve({ status: res.statusCode ?? 0, body, text });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('crafted ids for GET /v1/videos/{videoId}', () => {
  // [what, raw path segment(s) after /v1/videos/, status, code]
  const CRAFTED: Array<[string, number, string, string]> = [
    ['dot', 400, 'invalid_video_id', '.'],
    ['dot dot', 400, 'invalid_video_id', '..'],
    ['encoded dot', 400, 'invalid_video_id', '%2e'],
    ['encoded dot dot', 400, 'invalid_video_id', '%2e%2e'],
    ['encoded dot dot, upper case', 400, 'invalid_video_id', '%2E%2E'],
    ['encoded dot dot slash', 400, 'invalid_video_id', '%2e%2e%2F'],
    ['encoded slash', 400, 'invalid_video_id', '%2F'],
    ['encoded slash inside', 400, 'invalid_video_id', 'a%2Fb'],
    ['traversal behind a real prefix', 400, 'invalid_video_id', 'vi0000000000%2F..%2F..'],
    ['double-encoded dot', 400, 'invalid_video_id', '%252e'],
    ['encoded query', 400, 'invalid_video_id', 'viAAAAAAAAAAAA%3FpageSize%3D1'],
    ['encoded fragment', 400, 'invalid_video_id', 'viAAAAAAAAAAAA%23x'],
    ['NUL byte', 400, 'invalid_video_id', 'viAAAAAAAAAAAA%00'],
    ['backslash', 400, 'invalid_video_id', 'viAAAAAAAAAA%5C..'],
    ['overly long', 400, 'invalid_video_id', `vi${'A'.repeat(2000)}`],
    ['too short', 400, 'invalid_video_id', 'viAB'],
    ['unicode', 400, 'invalid_video_id', 'vi%C3%A9AAAAAAAAAAAA'],
    ['unicode look-alike digits', 400, 'invalid_video_id', 'vi%EF%BC%91AAAAAAAAAAAA'],
    ['malformed percent-encoding', 400, 'invalid_request', 'vi%zzAAAAAAAAAA'],
    ['a raw slash', 404, 'route_not_found', 'a/b'],
    ['empty', 404, 'route_not_found', ''],
  ];

  test.each(CRAFTED)('%s: %i %s, api.video never asked', async (_what, status, code, segment) => {
    const mark = emulator.requestLog.length;
    const answer = await raw(relay.url, 'GET', `/v1/videos/${segment}`, as.alice);
    expect(answer.status).toBe(status);
    expect(answer.body).toMatchObject({ status, code });
    expect(upstreamSince(mark)).toEqual([]);
  });

  test('a well-shaped unknown id: 404 video_not_found, and api.video saw exactly that path', async () => {
    const mark = emulator.requestLog.length;
    const answer = await raw(relay.url, 'GET', `/v1/videos/${UNKNOWN_ID}`, as.alice);
    expect(answer.body).toMatchObject({ status: 404, code: 'video_not_found' });
    expect(upstreamSince(mark)).toEqual([{ method: 'GET', url: `/videos/${UNKNOWN_ID}` }]);
  });

  // Defence in depth: a caller that forgot to check still cannot steer the upstream path.
  const BAD_IDS = [
    '.',
    '..',
    '%2e',
    '%2e%2e',
    'a/b',
    '../videos',
    'vi/../../x',
    '',
    `vi${'A'.repeat(100)}`,
    'viéAAAAAAAAAA',
    'viAAAAAAAAAA?x=1',
  ];
  const OPERATIONS: Array<[string, (id: string) => Promise<unknown>]> = [
    ['getVideo', (id) => relay.client.getVideo(id)],
    ['getVideoStatus', (id) => relay.client.getVideoStatus(id)],
    ['deleteVideo', (id) => relay.client.deleteVideo(id)],
    ['uploadPart', (id) => relay.client.uploadPart(id, 1, true, [Buffer.from('x')])],
  ];
  test.each(OPERATIONS)(
    'the api.video client refuses to %s a malformed id',
    async (_name, call) => {
      const mark = emulator.requestLog.length;
      for (const id of BAD_IDS) {
        await expect(call(id)).rejects.toBeInstanceOf(ApiVideoInvalidIdError);
        expect(toRelayError(await call(id).catch((e: unknown) => e))).toMatchObject({
          status: 400,
          code: 'invalid_video_id',
        });
      }
      expect(upstreamSince(mark)).toEqual([]);
    },
  );
});

test('an upload into a named container whose id is not api.video-shaped: 400 invalid_video_id, api.video never asked', async () => {
  const mark = emulator.requestLog.length;
  const answer = await uploadRaw(relay.url, 1000, {
    headers: as.alice,
    query: 'videoId=vi-AAAAAAAAAAAA', // accepted by the form's own check, refused by the client's
  });
  expect(answer.body).toMatchObject({ status: 400, code: 'invalid_video_id' });
  expect(upstreamSince(mark)).toEqual([]);
});

describe('who may read a video', () => {
  const TITLE = 'alices-holiday';
  let alices: string;
  beforeAll(async () => {
    const answer = await uploadRaw(relay.url, 1000, { headers: as.alice, query: `title=${TITLE}` });
    expect(answer.status).toBe(201);
    alices = answer.body.videoId as string;
  });

  // [who reads Alice's video, status, headers]
  const READERS: Array<[string, number, () => Promise<Record<string, string>>]> = [
    ['Alice herself', 200, async () => as.alice],
    ['Bob', 404, async () => as.bob],
    ['a JWT whose sub is Alice’s principal string', 404, () => as.jwt(ALICE_PRINCIPAL)],
    ['a JWT whose sub is Alice’s owner mark', 404, () => as.jwt(ownerMark(ALICE_PRINCIPAL))],
    ['nobody', 401, async () => as.nobody],
  ];
  test.each(READERS)('%s: %d', async (_who, status, headers) => {
    const answer = await raw(relay.url, 'GET', `/v1/videos/${alices}`, await headers());
    expect(answer.status).toBe(status);
    if (status === 200) expect(answer.body).toMatchObject({ videoId: alices, title: TITLE });
    else expect(answer.text).not.toMatch(new RegExp(`${TITLE}|assets|${OWNER_METADATA_KEY}`));
  });

  test('a video of the account the relay did not upload is nobody’s: 404 for every principal', async () => {
    const foreign = emulator.videos.create({ title: 'made in the dashboard' }).videoId;
    for (const headers of [as.alice, as.bob, await as.jwt('someone')]) {
      const answer = await raw(relay.url, 'GET', `/v1/videos/${foreign}`, headers);
      expect(answer.body).toMatchObject({ status: 404, code: 'video_not_found' });
    }
  });

  test('a client-supplied owner entry cannot claim a video for someone else, nor leak who', async () => {
    const bobsMark = ownerMark(
      'token:' + createHash('sha256').update(TOKEN_BOB).digest('hex').slice(0, 12),
    );
    const metadata = JSON.stringify({ [OWNER_METADATA_KEY]: bobsMark, customer: '42' });
    const answer = await uploadRaw(relay.url, 1000, {
      headers: as.alice,
      query: `metadata=${encodeURIComponent(metadata)}`,
    });
    expect(answer.status).toBe(201);
    const id = answer.body.videoId as string;
    const stored = inspectVideo(emulator, id).input.metadata ?? [];
    expect(stored).toEqual([
      { key: 'customer', value: '42' },
      { key: OWNER_METADATA_KEY, value: ownerMark(ALICE_PRINCIPAL) },
    ]);
    expect(JSON.stringify(stored)).not.toMatch(/token|alice|127\.0\.0\.1/i);
    expect((await raw(relay.url, 'GET', `/v1/videos/${id}`, as.bob)).status).toBe(404);
    expect((await raw(relay.url, 'GET', `/v1/videos/${id}`, as.alice)).status).toBe(200);
  });
});

describe('JWT edge cases', () => {
  let lenient: TestRelay;
  beforeAll(async () => {
    lenient = await relayWith({ RELAY_JWT_SECRET: JWT_SECRET, RELAY_JWT_REQUIRE_EXP: 'false' });
  });

  // [what, token, status on the main relay (exp required), status with RELAY_JWT_REQUIRE_EXP=false]
  // 404 means "authenticated" here: the id is well-shaped and unknown.
  const TOKENS: Array<[string, () => Promise<string>, number, number]> = [
    ['a good token', () => jwt({ sub: 'user-1' }), 404, 404],
    ['no exp', () => jwt({ sub: 'user-1', exp: null }), 401, 404],
    ['expired', () => jwt({ sub: 'user-1', exp: '-1m' }), 401, 401],
    ['not yet valid (nbf)', () => jwt({ sub: 'user-1', nbf: '10m' }), 401, 401],
    ['no sub', () => jwt({}), 401, 401],
    ['an empty sub', () => jwt({ sub: '' }), 401, 401],
    ['a sub of 257 characters', () => jwt({ sub: 'u'.repeat(257) }), 401, 401],
    ['HS512 (not the algorithm configured)', () => jwt({ sub: 'user-1' }, 'HS512'), 401, 401],
    [
      'alg none',
      async () => new UnsecuredJWT({}).setSubject('user-1').setExpirationTime('5m').encode(),
      401,
      401,
    ],
    [
      'signed with another secret',
      () =>
        new SignJWT({})
          .setProtectedHeader({ alg: 'HS256' })
          .setSubject('user-1')
          .setExpirationTime('5m')
          .sign(new TextEncoder().encode('another-secret-that-is-long-enough-xxxx')),
      401,
      401,
    ],
  ];
  test.each(TOKENS)('%s', async (_what, make, strict, loose) => {
    const headers = { authorization: `Bearer ${await make()}` };
    expect((await raw(relay.url, 'GET', `/v1/videos/${UNKNOWN_ID}`, headers)).status).toBe(strict);
    expect((await raw(lenient.url, 'GET', `/v1/videos/${UNKNOWN_ID}`, headers)).status).toBe(loose);
  });

  test('a JWT whose sub is a static token’s principal string uploads as jwt:<that string>', async () => {
    const answer = await uploadRaw(relay.url, 100, { headers: await as.jwt(ALICE_PRINCIPAL) });
    expect(answer.status).toBe(201);
    const id = answer.body.videoId as string;
    expect(inspectVideo(emulator, id).input.metadata).toEqual([
      { key: OWNER_METADATA_KEY, value: ownerMark(`jwt:${ALICE_PRINCIPAL}`) },
    ]);
    expect((await raw(relay.url, 'GET', `/v1/videos/${id}`, as.alice)).status).toBe(404);
  });

  test('RELAY_JWT_SECRET with RELAY_JWKS_URL is a start-up error naming both; a bad RELAY_JWT_REQUIRE_EXP too', () => {
    let error: unknown;
    try {
      loadConfig({
        APIVIDEO_API_KEY: TEST_API_KEY,
        RELAY_JWT_SECRET: JWT_SECRET,
        RELAY_JWKS_URL: 'https://idp.example/jwks.json',
        RELAY_JWT_REQUIRE_EXP: 'maybe',
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      expect.stringMatching(/^RELAY_JWT_REQUIRE_EXP: expected true or false/),
      expect.stringMatching(/^RELAY_JWT_SECRET \/ RELAY_JWKS_URL: both are set/),
    ]);
  });
});

describe('the lingering close after an early error', () => {
  test('an unauthenticated client streaming fast is cut after 32 MiB (+ socket buffers), and gets its 401', async () => {
    const serverSockets: Socket[] = [];
    const onConnection = (s: Socket) => serverSockets.push(s);
    relay.server.on('connection', onConnection);
    const { hostname, port } = new URL(relay.url);
    const socket = connect(Number(port), hostname);
    try {
      await once(socket, 'connect');
      const localPort = socket.localPort;
      let received = '';
      socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
      socket.on('error', () => undefined); // being cut off is the point
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      let open = true;
      void closed.then(() => (open = false));
      const declared = 4 * 1024 * MiB;
      const head =
        `POST /v1/videos HTTP/1.1\r\nHost: relay.test\r\nContent-Type: video/mp4\r\n` +
        `Content-Length: ${declared}\r\n\r\n`;
      socket.write(head);
      const chunk = Buffer.alloc(MiB, 7);
      const begun = Date.now();
      let accepted = 0; // bytes the kernel took from us (the write callback ran without error)
      while (open && accepted < declared) {
        const ok = await Promise.race([
          new Promise<boolean>((resolve) => socket.write(chunk, (err) => resolve(!err))),
          closed.then(() => false),
        ]);
        if (!ok) break;
        accepted += chunk.length;
      }
      await closed;
      const elapsed = Date.now() - begun;
      const server = serverSockets.find((s) => s.remotePort === localPort);
      const bodyRead = server!.bytesRead - Buffer.byteLength(head);
      // Seen before the fix: 2.5 GiB in the 5 s window.
      console.log(
        `linger: relay read ${(bodyRead / MiB).toFixed(1)} MiB of body, client handed ${(accepted / MiB).toFixed(1)} MiB to its socket, cut after ${elapsed} ms`,
      );
      expect(received).toMatch(/^HTTP\/1\.1 401 /);
      expect(bodyRead).toBeLessThanOrEqual(LINGER.bytes + MiB);
      expect(accepted).toBeLessThanOrEqual(LINGER.bytes + 16 * MiB);
      expect(elapsed).toBeLessThan(LINGER.ms); // cut by the byte cap, not the timer
    } finally {
      relay.server.off('connection', onConnection);
      socket.destroy();
    }
  });
});

describe('query strings', () => {
  const params = (n: number, extra = '') =>
    Array.from({ length: n }, (_, i) => `p${i}=1`).join('&') + extra;

  // [what, method, path with query, status, code]
  const FLOODS: Array<[string, string, string, number, string]> = [
    ['1001 parameters on an upload', 'POST', `/v1/videos?${params(1001)}`, 400, 'invalid_request'],
    [
      '1000 parameters and empty pieces',
      'POST',
      `/v1/videos?${params(1000, '&&')}`,
      400,
      'invalid_request',
    ],
    [
      '1001 parameters on a video',
      'GET',
      `/v1/videos/${UNKNOWN_ID}?${params(1001)}`,
      400,
      'invalid_request',
    ],
    [
      '1001 parameters on a resumable upload',
      'POST',
      `/v1/uploads?${params(1001)}`,
      400,
      'invalid_request',
    ],
  ];
  test.each(FLOODS)('%s: refused, nothing created', async (_what, method, path, status, code) => {
    const before = emulator.videos.all().length;
    const answer = await raw(relay.url, method, path, { ...as.alice, 'content-type': 'video/mp4' });
    expect(answer.body).toMatchObject({ status, code });
    expect(emulator.videos.all().length).toBe(before);
  });

  test('1000 parameters are all read: the last one (title) is not dropped', async () => {
    const answer = await uploadRaw(relay.url, 100, {
      headers: as.alice,
      query: `${params(999)}&title=the-last-one`,
    });
    expect(answer.status).toBe(201);
    expect(inspectVideo(emulator, answer.body.videoId as string).input.title).toBe('the-last-one');
  });
});

describe('upstream failures that are not network errors', () => {
  const PROXY_PASSWORD = 'wr0ng-pr0xy-pw';
  let proxy: ProxyServer;
  let dispatcher: ReturnType<typeof upstreamDispatcher>;
  let behindProxy: TestRelay;
  let slow: TestRelay;
  beforeAll(async () => {
    proxy = new ProxyServer({
      port: 0,
      host: '127.0.0.1',
      prepareRequestFunction: ({ username, password }) => ({
        requestAuthentication: username !== 'relay' || password !== 'the-right-one',
      }),
    });
    await proxy.listen();
    dispatcher = upstreamDispatcher({
      httpProxy: `http://relay:${PROXY_PASSWORD}@127.0.0.1:${proxy.port}`,
      noProxy: '',
    });
    behindProxy = await relayWith({ UPSTREAM_MAX_ATTEMPTS: '2' }, { client: { dispatcher } });
    slow = await relayWith(
      { UPSTREAM_MAX_ATTEMPTS: '2' },
      // undici checks its timeouts on a 0.5 s tick: the faults below are 2 s slow to be sure.
      { client: { timeouts: { headersMs: 200 } } },
    );
  });
  afterAll(async () => {
    await dispatcher.close();
    await proxy.close(true);
  });
  afterEach(() => emulator.faults.clear());

  // [what, relay, fault, method, path, status, code]
  type Row = [string, () => TestRelay, object | undefined, string, string, number, string];
  const FAILURES: Row[] = [
    [
      'proxy 407 on an upload',
      () => behindProxy,
      undefined,
      'POST',
      '/v1/videos',
      502,
      'upstream_proxy_error',
    ],
    [
      'proxy 407 on a read',
      () => behindProxy,
      undefined,
      'GET',
      `/v1/videos/${UNKNOWN_ID}`,
      502,
      'upstream_proxy_error',
    ],
    [
      'a silent api.video on a read',
      () => slow,
      { target: 'get', delayMs: 2000, times: 2 },
      'GET',
      `/v1/videos/${UNKNOWN_ID}`,
      504,
      'upstream_timeout',
    ],
    [
      'a silent api.video on create',
      () => slow,
      { target: 'create', delayMs: 2000, times: 2 },
      'POST',
      '/v1/videos',
      504,
      'upstream_timeout',
    ],
  ];
  test.each(FAILURES)('%s', async (_what, which, fault, method, path, status, code) => {
    if (fault) emulator.faults.add(fault as Parameters<typeof emulator.faults.add>[0]);
    const target = which();
    const answer =
      method === 'POST' ? await uploadRaw(target.url, 1000) : await raw(target.url, method, path);
    expect(answer.status).toBe(status);
    expect(answer.body).toMatchObject({ status, code });
    expect(JSON.stringify(answer.body)).not.toContain(PROXY_PASSWORD);
    expect(target.rawLogs()).not.toContain(PROXY_PASSWORD);
  });

  test('the caller’s own deadline on a GET (AbortSignal.timeout) is upstream_timeout, not internal_error', async () => {
    emulator.faults.add({ target: 'get', delayMs: 400 });
    const err = await relay.client
      .getVideo(UNKNOWN_ID, { signal: AbortSignal.timeout(100) })
      .catch((e: unknown) => e);
    expect(toRelayError(err)).toMatchObject({ status: 504, code: 'upstream_timeout' });
  });
});
