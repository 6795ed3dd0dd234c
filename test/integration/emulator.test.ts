/** The emulator over HTTP, spoken to directly: auth, containers, the source forms, faults, control API. */
import { request } from 'undici';
import { basicAuth } from '../helpers/auth';
import { MiB } from '../helpers/data';
import { TEST_API_KEY } from '../helpers/emulator';
import { useEmulator } from '../helpers/fixture';
import { Multipart } from '../helpers/multipart';
import { eventually } from '../helpers/wait';

const fixture = useEmulator();
const emulator = () => fixture.emulator;
const BASIC = basicAuth(TEST_API_KEY);

async function call(
  method: string,
  path: string,
  options: { auth?: string; json?: unknown; body?: Buffer; headers?: Record<string, string> } = {},
) {
  const headers: Record<string, string> = { ...options.headers };
  if (options.auth !== '') headers.authorization = options.auth ?? BASIC;
  let body: string | Buffer | undefined;
  if (options.json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.json);
  } else if (options.body) body = options.body;
  const res = await request(emulator().url + path, { method: method as 'GET', headers, body });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    body: text ? JSON.parse(text) : undefined,
  };
}

async function upload(
  videoId: string,
  range: string | undefined,
  files: Array<{ name: string; data: Buffer }>,
) {
  const form = new Multipart();
  return call('POST', `/videos/${videoId}/source`, {
    body: form.body(files),
    headers: { 'content-type': form.contentType, ...(range ? { 'content-range': range } : {}) },
  });
}

const newVideo = async () =>
  (await call('POST', '/videos', { json: { title: 't' } })).body.videoId as string;

describe('authentication', () => {
  test('Basic with the key works; a wrong key or none is 401 problem+json', async () => {
    expect((await call('GET', '/videos')).status).toBe(200);
    for (const auth of [basicAuth('nope'), '']) {
      const res = await call('GET', '/videos', { auth });
      expect(res.status).toBe(401);
      expect(res.headers['content-type']).toBe('application/problem+json');
    }
  });

  test('Bearer: /auth/api-key gives a token; a wrong key there is 400 authentication-invalid-user-credentials', async () => {
    const good = await call('POST', '/auth/api-key', { auth: '', json: { apiKey: TEST_API_KEY } });
    expect(good.body).toMatchObject({
      token_type: 'Bearer',
      expires_in: 3600,
      access_token: expect.any(String),
      refresh_token: expect.any(String),
    });
    expect(
      (await call('GET', '/videos', { auth: `Bearer ${good.body.access_token}` })).status,
    ).toBe(200);
    const bad = await call('POST', '/auth/api-key', { auth: '', json: { apiKey: 'wrong' } });
    expect(bad.status).toBe(400);
    expect(bad.body.type).toMatch(/authentication-invalid-user-credentials$/);
  });

  test('expired tokens get 401; /auth/refresh gives a new one, once per refresh token', async () => {
    const pair = (await call('POST', '/auth/api-key', { auth: '', json: { apiKey: TEST_API_KEY } }))
      .body;
    emulator().tokens.expireAll();
    expect((await call('GET', '/videos', { auth: `Bearer ${pair.access_token}` })).status).toBe(
      401,
    );
    const renewed = await call('POST', '/auth/refresh', {
      auth: '',
      json: { refreshToken: pair.refresh_token },
    });
    expect(
      (await call('GET', '/videos', { auth: `Bearer ${renewed.body.access_token}` })).status,
    ).toBe(200);
    expect(
      (
        await call('POST', '/auth/refresh', {
          auth: '',
          json: { refreshToken: pair.refresh_token },
        })
      ).status,
    ).toBe(400);
  });

  test('a token lifetime can be shortened', async () => {
    emulator().tokens.setTtl(1);
    try {
      const pair = (
        await call('POST', '/auth/api-key', { auth: '', json: { apiKey: TEST_API_KEY } })
      ).body;
      expect(pair.expires_in).toBe(1);
      await new Promise((r) => setTimeout(r, 1100)); // the lifetime is whole seconds
      expect((await call('GET', '/videos', { auth: `Bearer ${pair.access_token}` })).status).toBe(
        401,
      );
    } finally {
      emulator().tokens.setTtl(3600);
    }
  });
});

describe('containers', () => {
  test('create (title required), get, status, delete, then 404', async () => {
    expect((await call('POST', '/videos', { json: {} })).body).toMatchObject({
      status: 400,
      name: 'title',
    });
    const created = await call('POST', '/videos', {
      json: { title: 'A', tags: ['x'], metadata: [{ key: 'k', value: 'v' }] },
    });
    expect(created.status).toBe(201);
    expect(created.headers['content-type']).toBe('application/json');
    const id = created.body.videoId as string;
    expect(id).toMatch(/^vi[A-Za-z0-9]{22}$/);
    expect((await call('GET', `/videos/${id}`)).body).toMatchObject({
      videoId: id,
      title: 'A',
      tags: ['x'],
      assets: { player: expect.stringContaining(id) },
    });
    expect((await call('GET', `/videos/${id}/status`)).body).toMatchObject({
      ingest: { status: null, receivedParts: { parts: [] } },
    });
    expect((await call('DELETE', `/videos/${id}`)).status).toBe(204);
    expect((await call('GET', `/videos/${id}`)).body).toMatchObject({
      status: 404,
      type: expect.stringMatching(/resource-not-found$/),
    });
    expect((await call('DELETE', `/videos/${id}`)).status).toBe(404);
  });

  test('every answer carries X-RateLimit headers', async () => {
    const res = await call('GET', '/videos');
    expect(res.headers['x-ratelimit-limit']).toBeDefined();
    expect(res.headers['x-ratelimit-remaining']).toBeDefined();
  });
});

describe('POST /videos/{id}/source over HTTP', () => {
  test('zero files, two files: 400 with their own types', async () => {
    const id = await newVideo();
    expect((await upload(id, 'part 1/1', [])).body.type).toMatch(/uploaded-file-no-file$/);
    const two = await upload(id, 'part 1/1', [
      { name: 'a', data: Buffer.from('1') },
      { name: 'b', data: Buffer.from('2') },
    ]);
    expect(two.body.type).toMatch(/uploaded-file-multiple-files$/);
  });

  test('parts with any field name; status shows progress; one upload per container', async () => {
    const id = await newVideo();
    expect(
      (await upload(id, 'part 2/*', [{ name: 'whatever', data: Buffer.alloc(5 * MiB) }])).status,
    ).toBe(201);
    expect((await call('GET', `/videos/${id}/status`)).body.ingest).toMatchObject({
      status: 'uploading',
      receivedParts: { parts: [2], total: null },
    });
    expect(
      (await upload(id, 'part 1/*', [{ name: 'file', data: Buffer.alloc(5 * MiB) }])).status,
    ).toBe(201);
    const last = await upload(id, 'part 3/3', [{ name: 'file', data: Buffer.from('end') }]);
    expect(last.status).toBe(201);
    expect(last.body.videoId).toBe(id);
    expect((await call('GET', `/videos/${id}/status`)).body.ingest).toMatchObject({
      status: 'uploaded',
      filesize: 10 * MiB + 3,
      receivedParts: { parts: [1, 2, 3], total: 3 },
    });
    const again = await upload(id, 'part 1/1', [{ name: 'file', data: Buffer.from('x') }]);
    expect(again.body).toMatchObject({
      status: 400,
      type: expect.stringMatching(/video-source-already-uploaded$/),
    });
  });

  test('a part for an unknown video is 404', async () => {
    expect(
      (await upload('viNope', 'part 1/1', [{ name: 'file', data: Buffer.from('x') }])).status,
    ).toBe(404);
  });
});

describe('fault injection', () => {
  test('a status with a retry header, a chosen number of times, then normal service', async () => {
    emulator().faults.add({ target: 'create', status: 429, retryAfter: 2, times: 2 });
    for (let i = 0; i < 2; i++) {
      const res = await call('POST', '/videos', { json: { title: 't' } });
      expect(res.status).toBe(429);
      expect(res.headers['retry-after']).toBe('2');
      expect(res.headers['x-ratelimit-retry-after']).toBe('2');
    }
    expect((await call('POST', '/videos', { json: { title: 't' } })).status).toBe(201);
  });

  test('a chosen part only: part 2 fails, part 1 does not', async () => {
    const id = await newVideo();
    emulator().faults.add({ target: 'part', part: 2, status: 503 });
    expect(
      (await upload(id, 'part 1/*', [{ name: 'file', data: Buffer.alloc(5 * MiB) }])).status,
    ).toBe(201);
    expect((await upload(id, 'part 2/2', [{ name: 'file', data: Buffer.from('x') }])).status).toBe(
      503,
    );
    expect((await upload(id, 'part 2/2', [{ name: 'file', data: Buffer.from('x') }])).status).toBe(
      201,
    );
  });

  test('a delay', async () => {
    emulator().faults.add({ target: 'any', delayMs: 300 });
    const started = Date.now();
    await call('GET', '/videos');
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });

  test('a dropped connection mid-request', async () => {
    const id = await newVideo();
    emulator().faults.add({ target: 'part', drop: true });
    await expect(
      upload(id, 'part 1/1', [{ name: 'file', data: Buffer.alloc(MiB) }]),
    ).rejects.toThrow();
    expect(emulator().videos.inspect(id)!.assembly.summary().parts).toEqual([]);
  });

  test('parts in flight at once are recorded', async () => {
    const id = await newVideo();
    const { gate, stats } = emulator();
    stats.reset();
    gate.hold();
    const answers = Promise.all(
      [1, 2, 3].map((n) =>
        upload(id, `part ${n}/*`, [{ name: 'file', data: Buffer.alloc(5 * MiB) }]),
      ),
    );
    await gate.waitForHeld(3);
    gate.open();
    expect((await answers).map((a) => a.status)).toEqual([201, 201, 201]);
    expect(stats.maxPartsInFlight).toBe(3);
    expect(stats.partsInFlight).toBe(0);
  });

  test('the part gate: a held part whose client goes away leaves the gate and is not assembled', async () => {
    const id = await newVideo();
    const { gate } = emulator();
    gate.hold();
    const form = new Multipart();
    const gone = new AbortController();
    const sent = request(`${emulator().url}/videos/${id}/source`, {
      method: 'POST',
      headers: {
        authorization: BASIC,
        'content-type': form.contentType,
        'content-range': 'part 1/1',
      },
      body: form.body([{ name: 'file', data: Buffer.from('held') }]),
      signal: gone.signal,
    });
    await gate.waitForHeld(1);
    expect(gate.held).toEqual(['part 1/1']);
    gone.abort();
    await expect(sent).rejects.toThrow();
    await eventually(() => gate.held.length === 0);
    expect(emulator().videos.inspect(id)!.assembly.summary().parts).toEqual([]);
  });

  test('the control API sets faults and reads records over HTTP (for tests of a separate process)', async () => {
    const add = await request(`${emulator().url}/_emulator/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ target: 'create', status: 500 }),
    });
    expect(add.statusCode).toBe(201);
    await add.body.dump();
    expect((await call('POST', '/videos', { json: { title: 't' } })).status).toBe(500);
    const id = await newVideo();
    const seen = await request(`${emulator().url}/_emulator/videos/${id}`);
    expect(await seen.body.json()).toMatchObject({ videoId: id, deleted: false, completed: false });
    const stats = await request(`${emulator().url}/_emulator/stats`);
    expect(await stats.body.json()).toMatchObject({ maxPartsInFlight: expect.any(Number) });
  });
});
