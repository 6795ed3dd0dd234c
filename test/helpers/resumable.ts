import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { Redis } from 'ioredis';
import request from 'supertest';
import { request as undici } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import { startTestRelay, type TestRelay, type TestRelayOptions } from './relay';

export const TOKEN_A = 'tus-token-alpha-0123456789';
export const TOKEN_B = 'tus-token-bravo-0123456789';
export const auth = (token: string) => ({ Authorization: `Bearer ${token}` });
export const TUS = { 'Tus-Resumable': '1.0.0' };

/** A Redis key prefix of this test run's own: files running side by side never meet. */
export const testPrefix = () => `relay-test-${randomBytes(6).toString('hex')}:`;

export interface RedisRelay {
  relay: TestRelay;
  redis: Redis;
  prefix: string;
  close(): Promise<void>;
}

/**
 * A relay whose resumable sessions, locks and tokens are in the real Redis, under a prefix of its
 * own, configured as an operator would (REDIS_URL, REDIS_KEY_PREFIX); `redis` is the test's own
 * connection, to look at or change what is stored.
 */
export async function relayWithRedis(
  emulator: RunningEmulator,
  env: Record<string, string> = {},
  options: Partial<TestRelayOptions> & { redisUrl?: string; prefix?: string } = {},
): Promise<RedisRelay> {
  const prefix = options.prefix ?? testPrefix();
  const redis = new Redis('redis://127.0.0.1:6379', {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    retryStrategy: () => 50,
  });
  await new Promise<void>((resolve, reject) => {
    redis.once('ready', resolve);
    redis.once('error', reject);
  });
  redis.on('error', () => undefined);
  const relay = await startTestRelay(emulator, {
    ...options,
    env: {
      RELAY_API_TOKENS: `${TOKEN_A},${TOKEN_B}`,
      UPLOAD_PART_SIZE: '5MiB',
      LOG_LEVEL: 'info',
      REDIS_URL: options.redisUrl ?? 'redis://127.0.0.1:6379',
      REDIS_KEY_PREFIX: prefix,
      ...env,
    },
  });
  // The relay's connection is ready once it answers a request that needs it.
  await waitForRedis(relay);
  return {
    relay,
    redis,
    prefix,
    close: async () => {
      await relay.close();
      redis.disconnect();
    },
  };
}

/** Resolves once the relay's own Redis connection is up (it connects in the background). */
export async function waitForRedis(relay: TestRelay): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (
    !(await relay.relay.sessions.store.heldBytes().then(
      () => true,
      () => false,
    ))
  ) {
    if (Date.now() > deadline) throw new Error('the relay never reached Redis');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** POST /v1/uploads; resolves with the upload's path. */
export async function createUpload(
  url: string,
  length: number,
  token = TOKEN_A,
  metadata = `filename ${Buffer.from('x.mp4').toString('base64')}`,
): Promise<string> {
  const res = await request(url)
    .post('/v1/uploads')
    .set(auth(token))
    .set(TUS)
    .set('Upload-Length', String(length))
    .set('Upload-Metadata', metadata);
  if (res.status !== 201) throw new Error(`creation answered ${res.status}: ${res.text}`);
  return res.headers.location!;
}

export interface PatchAnswer {
  status: number;
  offset: string | undefined;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export function patch(
  url: string,
  path: string,
  offset: number,
  body: Buffer | AsyncIterable<Buffer>,
  token = TOKEN_A,
  extra: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<PatchAnswer> {
  return undici(`${url}${path}`, {
    method: 'PATCH',
    signal,
    headers: {
      ...auth(token),
      ...TUS,
      'Upload-Offset': String(offset),
      'Content-Type': 'application/offset+octet-stream',
      ...extra,
    },
    body: Buffer.isBuffer(body) ? body : Readable.from(body),
  }).then(async (r) => ({
    status: r.statusCode,
    offset: r.headers['upload-offset'] as string | undefined,
    headers: r.headers,
    body: await r.body.text(),
  }));
}

export async function headOffset(url: string, path: string, token = TOKEN_A) {
  const res = await request(url).head(path).set(auth(token)).set(TUS);
  return {
    status: res.status,
    offset: Number(res.headers['upload-offset']),
    length: Number(res.headers['upload-length']),
  };
}
