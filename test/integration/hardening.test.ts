/** Who may upload, how many at once, browsers, proxies in front, metrics, and secrets kept out of logs. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import request from 'supertest';
import type { RunningEmulator } from '../../src/emulator/app';
import { MiB } from '../helpers/data';
import { TEST_API_KEY, startTestEmulator } from '../helpers/emulator';
import { RawHttp } from '../helpers/raw-http';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { uploadMultipart, uploadRaw } from '../helpers/upload';

const TOKEN_A = 'token-alpha-0123456789abcdef';
const TOKEN_B = 'token-bravo-0123456789abcdef';
const JWT_SECRET = 'a-shared-secret-of-at-least-32-characters!';

let emulator: RunningEmulator;
const relays: TestRelay[] = [];
beforeAll(async () => (emulator = await startTestEmulator()));
afterAll(async () => {
  for (const r of relays) await r.close();
  await emulator.close();
});

async function relayWith(env: Record<string, string>) {
  const relay = await startTestRelay(emulator, { env });
  relays.push(relay);
  return relay;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const videoCount = () => emulator.videos.all().length;

describe('static tokens', () => {
  let relay: TestRelay;
  beforeAll(async () => (relay = await relayWith({ RELAY_API_TOKENS: `${TOKEN_A},${TOKEN_B}` })));

  test('a listed token uploads; the principal is in the upload line (a fingerprint, not the token)', async () => {
    const answer = await uploadRaw(relay.url, 1000, { headers: bearer(TOKEN_A) });
    expect(answer.status).toBe(201);
    const line = relay
      .logs()
      .find((l) => l.event === 'upload_finished' && l.videoId === answer.body.videoId)!;
    expect(line.principal).toMatch(/^token:[0-9a-f]{12}$/);
  });

  test.each([
    ['no Authorization header', {}],
    ['a wrong token', bearer('token-charlie-0123456789abcdef')],
    ['a prefix of a good token', bearer(TOKEN_A.slice(0, -1))],
    [
      'Basic instead of Bearer',
      { authorization: `Basic ${Buffer.from(TOKEN_A).toString('base64')}` },
    ],
  ])('%s: 401 problem with WWW-Authenticate, nothing created', async (_name, headers) => {
    const before = videoCount();
    const answer = await uploadRaw(relay.url, 1000, { headers: headers as Record<string, string> });
    expect(answer.status).toBe(401);
    expect(answer.headers['www-authenticate']).toMatch(/^Bearer/);
    expect(answer.body).toMatchObject({ code: 'unauthorized' });
    expect(videoCount()).toBe(before);
  });

  test('401 comes before any body byte is read: a client that expects 100-continue never sends it', async () => {
    const client = await RawHttp.open(relay.url);
    client.head('/v1/videos', {
      'Content-Type': 'video/mp4',
      'Content-Length': String(50 * MiB),
      Expect: '100-continue',
    });
    const answer = await client.answer();
    expect(answer.status).toBe(401);
    client.destroy();
  });
});

describe('JWT', () => {
  test('HS256 with issuer and audience: jwt:<sub> is the principal; bad tokens are 401', async () => {
    const relay = await relayWith({
      RELAY_JWT_SECRET: JWT_SECRET,
      RELAY_JWT_ISSUER: 'https://idp.test',
      RELAY_JWT_AUDIENCE: 'relay',
    });
    const key = new TextEncoder().encode(JWT_SECRET);
    const sign = (claims: { iss?: string; aud?: string; exp?: string }, secret = key) =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('user-42')
        .setIssuer(claims.iss ?? 'https://idp.test')
        .setAudience(claims.aud ?? 'relay')
        .setExpirationTime(claims.exp ?? '5m')
        .sign(secret);
    const ok = await uploadRaw(relay.url, 100, { headers: bearer(await sign({})) });
    expect(ok.status).toBe(201);
    expect(
      relay.logs().find((l) => l.event === 'upload_finished' && l.videoId === ok.body.videoId),
    ).toMatchObject({ principal: 'jwt:user-42' });
    for (const token of [
      await sign({ iss: 'https://evil.test' }),
      await sign({ aud: 'someone-else' }),
      await sign({ exp: '-1m' }),
      await sign({}, new TextEncoder().encode('another-secret-that-is-long-enough-xx')),
    ]) {
      expect((await uploadRaw(relay.url, 100, { headers: bearer(token) })).status).toBe(401);
    }
  });

  test('RS256 from a JWKS the test serves (fetched once, cached)', async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    let fetched = 0;
    const jwks: Server = createServer((_req, res) => {
      fetched += 1;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [jwk] }));
    }).listen(0, '127.0.0.1');
    await new Promise((r) => jwks.once('listening', r));
    try {
      const relay = await relayWith({
        RELAY_JWKS_URL: `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`,
      });
      const token = await new SignJWT({})
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setSubject('mobile-7')
        .setExpirationTime('5m')
        .sign(privateKey);
      for (let i = 0; i < 3; i++)
        expect((await uploadRaw(relay.url, 100, { headers: bearer(token) })).status).toBe(201);
      expect(fetched).toBe(1);
      const { privateKey: stranger } = await generateKeyPair('RS256');
      const forged = await new SignJWT({})
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setSubject('x')
        .sign(stranger);
      expect((await uploadRaw(relay.url, 100, { headers: bearer(forged) })).status).toBe(401);
    } finally {
      jwks.close();
    }
  });
});

describe('limits', () => {
  test('UPLOAD_MAX_CONCURRENT: past it, 503 with Retry-After before reading; nothing created', async () => {
    const relay = await relayWith({ UPLOAD_MAX_CONCURRENT: '1', UPLOAD_IDLE_TIMEOUT_MS: '0' });
    const stalled = await RawHttp.open(relay.url);
    stalled.head('/v1/videos', { 'Content-Type': 'video/mp4', 'Content-Length': String(10 * MiB) });
    await stalled.write(Buffer.alloc(1000));
    await new Promise((r) => setTimeout(r, 100));
    const before = videoCount();
    const refused = await uploadRaw(relay.url, 1000);
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('5');
    expect(refused.body).toMatchObject({ code: 'too_many_uploads' });
    expect(videoCount()).toBe(before);
    stalled.destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect((await uploadRaw(relay.url, 1000)).status).toBe(201); // the slot came back
  });

  test('UPLOAD_MAX_CONCURRENT_PER_CLIENT: 429 for that principal, others go on', async () => {
    const relay = await relayWith({
      RELAY_API_TOKENS: `${TOKEN_A},${TOKEN_B}`,
      UPLOAD_MAX_CONCURRENT_PER_CLIENT: '1',
      UPLOAD_IDLE_TIMEOUT_MS: '0',
    });
    const stalled = await RawHttp.open(relay.url);
    stalled.head('/v1/videos', {
      'Content-Type': 'video/mp4',
      'Content-Length': String(10 * MiB),
      Authorization: `Bearer ${TOKEN_A}`,
    });
    await stalled.write(Buffer.alloc(1000));
    await new Promise((r) => setTimeout(r, 100));
    const refused = await uploadRaw(relay.url, 1000, { headers: bearer(TOKEN_A) });
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBeDefined();
    expect(refused.body).toMatchObject({ code: 'too_many_uploads_per_client' });
    expect((await uploadRaw(relay.url, 1000, { headers: bearer(TOKEN_B) })).status).toBe(201);
    stalled.destroy();
  });

  test('field count and size limits have their own codes', async () => {
    const relay = await relayWith({ UPLOAD_MAX_FIELDS: '3', UPLOAD_MAX_FIELD_SIZE: '100' });
    const many = await uploadMultipart(relay.url, 10, {
      fields: [
        ['tags', 'a'],
        ['tags', 'b'],
        ['tags', 'c'],
        ['tags', 'd'],
      ],
    });
    expect(many.body).toMatchObject({ status: 400, code: 'too_many_fields' });
    const big = await uploadMultipart(relay.url, 10, {
      fields: [['description', 'x'.repeat(101)]],
    });
    expect(big.body).toMatchObject({ status: 400, code: 'field_too_large' });
  });
});

describe('browsers and reverse proxies', () => {
  test('CORS: preflight from an allowed origin is answered; a refused origin gets no grant', async () => {
    const relay = await relayWith({ CORS_ORIGINS: 'https://app.example' });
    const allowed = await request(relay.url)
      .options('/v1/videos')
      .set('Origin', 'https://app.example')
      .set('Access-Control-Request-Method', 'POST')
      .set('Access-Control-Request-Headers', 'authorization,content-type,x-request-id');
    expect(allowed.status).toBe(204);
    expect(allowed.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(allowed.headers['access-control-allow-headers']!.split(',')).toEqual(
      expect.arrayContaining([
        'Authorization',
        'Content-Type',
        'X-Request-Id',
        'Tus-Resumable',
        'Upload-Offset',
        'Upload-Length',
        'Upload-Metadata',
      ]),
    );
    const upload = await request(relay.url)
      .post('/v1/videos')
      .set('Origin', 'https://app.example')
      .attach('file', Buffer.from('x'), 'a.mp4');
    expect(upload.headers['access-control-expose-headers']!.split(',')).toEqual(
      expect.arrayContaining(['Location', 'X-Request-Id', 'Upload-Offset', 'Upload-Video-Id']),
    );
    const refused = await request(relay.url)
      .options('/v1/videos')
      .set('Origin', 'https://evil.example')
      .set('Access-Control-Request-Method', 'POST');
    expect(refused.headers['access-control-allow-origin']).toBeUndefined();
  });

  test('helmet headers on every response', async () => {
    const relay = await relayWith({});
    const res = await request(relay.url).get('/healthz');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['content-security-policy']).toBeDefined();
  });

  test('TRUST_PROXY: logs show the client address behind the balancer', async () => {
    const trusting = await relayWith({ TRUST_PROXY: 'loopback' });
    await request(trusting.url).get('/nowhere').set('X-Forwarded-For', '203.0.113.7');
    const seen = trusting.logs().find((l) => (l.req as { url?: string })?.url === '/nowhere');
    expect((seen!.req as { clientIp: string }).clientIp).toBe('203.0.113.7');
    const plain = await relayWith({});
    await request(plain.url).get('/nowhere').set('X-Forwarded-For', '203.0.113.7');
    const direct = plain.logs().find((l) => (l.req as { url?: string })?.url === '/nowhere');
    expect((direct!.req as { clientIp: string }).clientIp).toBe('127.0.0.1');
  });
});

describe('metrics', () => {
  const value = (text: string, metric: string) => {
    const line = text
      .split('\n')
      .find((l) => l.startsWith(metric + ' ') || l.startsWith(metric + '{'));
    return line ? Number(line.split(' ').at(-1)) : 0;
  };

  test('counters move when an upload runs; failures are counted by code', async () => {
    const relay = await relayWith({ UPLOAD_MAX_FILE_SIZE: '1MiB' });
    await uploadRaw(relay.url, 6 * MiB - 1, { query: 'x=1' }).catch(() => undefined);
    const okBefore = (await request(relay.url).get('/metrics')).text;
    const answer = await uploadRaw(relay.url, 700 * 1024);
    expect(answer.status).toBe(201);
    await uploadRaw(relay.url, 0);
    const after = (await request(relay.url).get('/metrics')).text;
    expect(
      value(after, 'relay_uploads_completed_total') -
        value(okBefore, 'relay_uploads_completed_total'),
    ).toBe(1);
    expect(
      value(after, 'relay_bytes_received_total') - value(okBefore, 'relay_bytes_received_total'),
    ).toBe(700 * 1024);
    expect(
      value(after, 'relay_bytes_relayed_total') - value(okBefore, 'relay_bytes_relayed_total'),
    ).toBe(700 * 1024);
    expect(after).toMatch(/relay_uploads_failed_total\{route="videos",code="empty_file"\} 1/);
    expect(after).toMatch(/relay_uploads_failed_total\{route="videos",code="file_too_large"\} 1/);
    // Who uploaded is never a label: no client can mint new series.
    expect(after).not.toMatch(/principal=/);
    expect(value(after, 'relay_part_upload_duration_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(value(after, 'relay_uploads_in_progress')).toBe(0);
    expect(value(after, 'relay_bytes_buffered')).toBe(0);
    expect(after).toContain('process_resident_memory_bytes');
  });

  test('retries are counted by reason', async () => {
    const relay = await relayWith({});
    emulator.faults.add({ target: 'part', part: 1, status: 503 });
    expect((await uploadRaw(relay.url, 100)).status).toBe(201);
    expect((await request(relay.url).get('/metrics')).text).toMatch(
      /relay_upstream_retries_total\{reason="server_error"\} 1/,
    );
  });

  test('METRICS_TOKEN protects /metrics; health stays open', async () => {
    const relay = await relayWith({
      METRICS_TOKEN: 'metrics-token-0123456789',
      RELAY_API_TOKENS: TOKEN_A,
    });
    expect((await request(relay.url).get('/metrics')).status).toBe(401);
    expect((await request(relay.url).get('/metrics').set(bearer(TOKEN_A))).status).toBe(401);
    expect(
      (await request(relay.url).get('/metrics').set(bearer('metrics-token-0123456789'))).status,
    ).toBe(200);
    expect((await request(relay.url).get('/healthz')).status).toBe(200);
    expect((await request(relay.url).get('/readyz')).status).toBe(200);
  });
});

test('at debug level, no log line holds the API key, a client token or a JWT secret', async () => {
  const relay = await relayWith({
    LOG_LEVEL: 'trace',
    RELAY_API_TOKENS: TOKEN_A,
    METRICS_TOKEN: 'metrics-token-0123456789',
  });
  await uploadMultipart(relay.url, 6 * MiB, { headers: bearer(TOKEN_A) });
  await uploadRaw(relay.url, 10, { headers: bearer('token-wrong-0123456789abcdef') });
  await request(relay.url).get('/metrics').set(bearer('metrics-token-0123456789'));
  const logs = relay.rawLogs();
  expect(logs).toContain('"level":20'); // debug lines were written
  expect(logs).toContain('[REDACTED]');
  for (const secret of [
    TEST_API_KEY,
    Buffer.from(`${TEST_API_KEY}:`).toString('base64'),
    TOKEN_A,
    'metrics-token-0123456789',
    'token-wrong-0123456789abcdef',
  ]) {
    expect(logs).not.toContain(secret);
  }
});
