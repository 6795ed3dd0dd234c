/** The relay's api.video client against the emulator: every fault it must survive, and what it must not retry. */
import { ApiVideoClient } from '../../src/apivideo/client';
import {
  ApiVideoHttpError,
  ApiVideoKeyRejectedError,
  ApiVideoNetworkError,
} from '../../src/apivideo/errors';
import type { RetryEvent } from '../../src/apivideo/transport';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { TEST_API_KEY, inspectVideo } from '../helpers/emulator';
import { useEmulator } from '../helpers/fixture';

const clients: ApiVideoClient[] = [];
// Before the fixture's hooks: jest runs afterAll hooks in the order they were declared.
afterAll(() => Promise.all(clients.map((c) => c.close())));
const fixture = useEmulator();
const emulator = () => fixture.emulator;

function client(options: Partial<ConstructorParameters<typeof ApiVideoClient>[0]> = {}) {
  const c = new ApiVideoClient({
    apiKey: TEST_API_KEY,
    baseUrl: emulator().url,
    maxAttempts: 4,
    retry: { baseDelayMs: 5, maxDelayMs: 50 },
    ...options,
  });
  clients.push(c);
  return c;
}

function recorder() {
  const events: RetryEvent[] = [];
  return { events, onRetry: (e: RetryEvent) => events.push(e) };
}

test('a part written from several chunks arrives as their concatenation', async () => {
  const api = client();
  const { videoId } = await api.createVideo({ title: 'chunks' });
  const chunks = [randomBytesOf(3 * MiB), randomBytesOf(1), randomBytesOf(2 * MiB)];
  await api.uploadPart(videoId, 1, true, chunks);
  expect(inspectVideo(emulator(), videoId)).toMatchObject({
    completed: true,
    sha256: sha256(chunks),
    size: 5 * MiB + 1,
  });
});

test.each([
  ['429 with a retry header', { status: 429, retryAfter: 0 }, 'rate_limited'],
  ['500', { status: 500 }, 'server_error'],
  ['503', { status: 503 }, 'server_error'],
  ['408', { status: 408 }, 'timeout'],
  ['a dropped connection', { drop: true }, 'network'],
] as const)('a part answered with %s is retried whole and lands', async (_name, fault, reason) => {
  const api = client();
  const { videoId } = await api.createVideo({ title: 'fault' });
  emulator().faults.add({ target: 'part', part: 1, ...fault });
  const part = randomBytesOf(MiB);
  const { events, onRetry } = recorder();
  await api.uploadPart(videoId, 1, true, [part], { onRetry });
  expect(events.map((e) => e.reason)).toEqual([reason]);
  expect(inspectVideo(emulator(), videoId)).toMatchObject({
    completed: true,
    sha256: sha256(part),
  });
});

test('Retry-After is honoured over our own backoff', async () => {
  const api = client();
  emulator().faults.add({ target: 'create', status: 429, retryAfter: 1 });
  const { events, onRetry } = recorder();
  const started = Date.now();
  await api.createVideo({ title: 'patient' }, { onRetry });
  expect(events[0]).toMatchObject({ reason: 'rate_limited', delayMs: 1000, status: 429 });
  expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
});

test('at most UPSTREAM_MAX_ATTEMPTS tries, then the upstream problem as a typed error', async () => {
  const api = client({ maxAttempts: 3 });
  emulator().faults.add({ target: 'create', status: 500, times: 5 });
  emulator().stats.reset();
  const error = await api.createVideo({ title: 'x' }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ApiVideoHttpError);
  expect(error).toMatchObject({
    status: 500,
    problemTitle: 'Injected fault.',
    problemType: 'https://docs.api.video/reference/server-error',
  });
  expect(emulator().stats.requests).toBe(3);
});

test('a 4xx other than 401/408/429 is not retried', async () => {
  const api = client();
  emulator().stats.reset();
  const error = await api.createVideo({ title: '' }).catch((e: unknown) => e);
  expect(error).toMatchObject({
    status: 400,
    problemType: expect.stringMatching(/attribute-required$/),
  });
  expect(emulator().stats.requests).toBe(1);
});

test('network failures outlasting the attempts become ApiVideoNetworkError', async () => {
  const api = client({ maxAttempts: 2 });
  const { videoId } = await api.createVideo({ title: 'x' });
  emulator().faults.add({ target: 'part', drop: true, times: 2 });
  const error = await api
    .uploadPart(videoId, 1, true, [Buffer.alloc(1000)])
    .catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ApiVideoNetworkError);
  expect((error as ApiVideoNetworkError).code).toBe('network_error');
});

test('a header timeout counts as a network failure and is retried', async () => {
  // undici checks parser timeouts on a ~1 s tick, hence the wide margin.
  const api = client({ timeouts: { headersMs: 300 } });
  emulator().faults.add({ target: 'create', delayMs: 3000 });
  const { events, onRetry } = recorder();
  await api.createVideo({ title: 'slow' }, { onRetry });
  expect(events.map((e) => e.reason)).toEqual(['timeout']);
});

test('a wrong key is ApiVideoKeyRejectedError, not retried', async () => {
  const api = client({ apiKey: 'wrong-key' });
  emulator().stats.reset();
  await expect(api.createVideo({ title: 'x' })).rejects.toBeInstanceOf(ApiVideoKeyRejectedError);
  expect(emulator().stats.requests).toBe(1);
  const bearer = client({ apiKey: 'wrong-key', authScheme: 'bearer' });
  await expect(bearer.createVideo({ title: 'x' })).rejects.toBeInstanceOf(ApiVideoKeyRejectedError);
});

describe('abort', () => {
  test('stops an in-flight request at once', async () => {
    const api = client();
    emulator().faults.add({ target: 'create', delayMs: 3000 });
    const started = Date.now();
    await expect(
      api.createVideo({ title: 'x' }, { signal: AbortSignal.timeout(100) }),
    ).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  test('stops a retry wait at once', async () => {
    const api = client();
    emulator().faults.add({ target: 'create', status: 429, retryAfter: 30 });
    const started = Date.now();
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('user gone')), 100);
    await expect(api.createVideo({ title: 'x' }, { signal: controller.signal })).rejects.toThrow(
      'user gone',
    );
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe('Bearer tokens', () => {
  test('expired tokens are renewed once after a 401, shared by concurrent requests', async () => {
    const api = client({ authScheme: 'bearer' });
    await api.createVideo({ title: 'first' });
    const issuedBefore = emulator().tokens.issued;
    emulator().tokens.expireAll();
    const events: RetryEvent[] = [];
    const videos = await Promise.all(
      [1, 2, 3, 4].map((n) =>
        api.createVideo({ title: `v${n}` }, { onRetry: (e) => events.push(e) }),
      ),
    );
    expect(videos).toHaveLength(4);
    expect(emulator().tokens.issued).toBe(issuedBefore + 1);
    expect(events.every((e) => e.reason === 'auth_renewed')).toBe(true);
  });

  test('renewed before expiry: a token about to lapse is not used', async () => {
    emulator().tokens.setTtl(1);
    try {
      const api = client({ authScheme: 'bearer' });
      await api.createVideo({ title: 'a' });
      const issued = emulator().tokens.issued;
      await new Promise((r) => setTimeout(r, 950)); // past 90 % of the lifetime
      const { events, onRetry } = recorder();
      await api.createVideo({ title: 'b' }, { onRetry });
      expect(emulator().tokens.issued).toBe(issued + 1);
      expect(events).toEqual([]); // renewed ahead, so no 401 was ever met
    } finally {
      emulator().tokens.setTtl(3600);
    }
  });
});
