/**
 * Upload tokens in Redis, as several replicas share them: minted on one relay, spent on another,
 * uses counted atomically when replicas race, and nothing in Redis that works as a token.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import request from 'supertest';
import type { RunningEmulator } from '../../src/emulator/app';
import { RedisUploadTokenStore } from '../../src/stores/redis-upload-token-store';
import { UploadTokens } from '../../src/upload-tokens/tokens';
import { waitForRedis } from '../helpers/resumable';
import { inspectVideo, startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { uploadRaw } from '../helpers/upload';

const ALICE = 'alice-token-0123456789';
const PREFIX = `test-upload-tokens:${randomBytes(6).toString('hex')}:`;

let emulator: RunningEmulator;
const connections: Redis[] = [];
const relays: TestRelay[] = [];

function connect(): Redis {
  const redis = new Redis('redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 });
  connections.push(redis);
  return redis;
}

async function replica(): Promise<TestRelay> {
  // Configured as an operator would: the replicas share REDIS_URL, and tokens, sessions and
  // locks all live there under REDIS_KEY_PREFIX.
  const relay = await startTestRelay(emulator, {
    env: { RELAY_API_TOKENS: ALICE, REDIS_URL: 'redis://127.0.0.1:6379', REDIS_KEY_PREFIX: PREFIX },
  });
  relays.push(relay);
  await waitForRedis(relay);
  return relay;
}

beforeAll(async () => (emulator = await startTestEmulator()));
afterAll(async () => {
  for (const relay of relays) await relay.close();
  const redis = connections[0] ?? connect();
  const keys = await redis.keys(`${PREFIX}*`);
  if (keys.length > 0) await redis.del(...keys);
  for (const c of connections) c.disconnect();
  await emulator.close();
});

test('minted on replica A, spent on replica B, refused on A once used; revoked on B, refused on A', async () => {
  const [a, b] = [await replica(), await replica()];
  const minted = await request(a.url)
    .post('/v1/upload-tokens')
    .set('Authorization', `Bearer ${ALICE}`)
    .send({ title: 'across replicas', maxUses: 2 });
  expect(minted.status).toBe(201);
  const token = minted.body.token as string;
  const onB = await uploadRaw(b.url, 3000, { headers: { authorization: `Bearer ${token}` } });
  expect(onB.status).toBe(201);
  expect(inspectVideo(emulator, onB.body.videoId as string)).toMatchObject({
    completed: true,
    sha256: onB.sha256,
    input: { title: 'across replicas' },
  });
  const seenOnA = await request(a.url)
    .get(`/v1/upload-tokens/${token}`)
    .set('Authorization', `Bearer ${ALICE}`);
  expect(seenOnA.body).toMatchObject({ uses: 1, remainingUses: 1, status: 'active' });
  const revoke = await request(b.url)
    .delete(`/v1/upload-tokens/${minted.body.id}`)
    .set('Authorization', `Bearer ${ALICE}`);
  expect(revoke.status).toBe(204);
  const onA = await uploadRaw(a.url, 10, { headers: { authorization: `Bearer ${token}` } });
  expect([onA.status, onA.body.code]).toEqual([401, 'upload_token_revoked']);
});

test('replicas racing for the uses of one token: exactly maxUses win', async () => {
  const stores = [connect(), connect(), connect()].map((r) => new RedisUploadTokenStore(r, PREFIX));
  const tokens = new UploadTokens(stores[0]!);
  const { token } = await tokens.mint(
    { id: 'token:race', kind: 'token' },
    {
      ttl: 60,
      maxUses: 3,
      fields: {},
    },
  );
  const hash = (await tokens.find(token))!.hash;
  const results = await Promise.all(
    Array.from({ length: 30 }, (_, i) => stores[i % 3]!.consume(hash, Date.now(), `use-${i}`)),
  );
  expect(results.filter((r) => r.state === 'active')).toHaveLength(3);
  expect(results.filter((r) => r.state === 'used_up')).toHaveLength(27);
  expect((await stores[1]!.get(hash))!.uses).toBe(3);
});

test('the store decides expiry on the clock it is given, and revocation outranks it', async () => {
  const store = new RedisUploadTokenStore(connect(), PREFIX);
  let now = Date.now();
  const tokens = new UploadTokens(store, () => now);
  const { token } = await tokens.mint(
    { id: 'token:clock', kind: 'token' },
    {
      ttl: 10,
      maxUses: 1,
      fields: {},
    },
  );
  now += 10_000;
  await expect(tokens.check(token, 'start')).rejects.toMatchObject({
    code: 'upload_token_expired',
  });
  const { hash } = await tokens.check(token, 'continue');
  await expect(tokens.consume(hash, 'late')).rejects.toMatchObject({
    code: 'upload_token_expired',
  });
  await tokens.revoke(hash);
  await expect(tokens.check(token, 'continue')).rejects.toMatchObject({
    code: 'upload_token_revoked',
  });
  // Revoking what does not exist leaves nothing behind (no bare key without an expiry).
  await store.revoke('0'.repeat(64));
  expect(await connections.at(-1)!.exists(`${PREFIX}t:${'0'.repeat(64)}`)).toBe(0);
});

test('Redis holds no usable token: keys and values carry only its hash and id, and everything expires', async () => {
  const redis = connect();
  const tokens = new UploadTokens(new RedisUploadTokenStore(redis, PREFIX));
  const { token, record } = await tokens.mint(
    { id: 'token:dump', kind: 'token' },
    {
      ttl: 120,
      maxUses: 1,
      fields: { title: 'dump' },
    },
  );
  const secret = token.slice(3);
  const keys = await redis.keys(`${PREFIX}*`);
  expect(keys.length).toBeGreaterThan(0);
  for (const key of keys) {
    expect(key).not.toContain(secret);
    const type = await redis.type(key);
    const values =
      type === 'hash' ? Object.values(await redis.hgetall(key)) : [await redis.get(key)];
    for (const value of values) expect(value).not.toContain(secret);
    const ttl = await redis.pttl(key);
    expect(ttl).toBeGreaterThan(0);
  }
  const idKey = `${PREFIX}id:${record.id}`;
  const pttl = await redis.pttl(idKey);
  // Kept a day past expiry, so a late client is told "expired" rather than "unknown".
  expect(pttl).toBeGreaterThan(24 * 3600_000);
  expect(pttl).toBeLessThanOrEqual(24 * 3600_000 + 120_000);
});

test('POST /upload?token=: chunk 1 on replica A, chunk 2 (no videoId, as the Node client sends) on B', async () => {
  const [a, b] = [await replica(), await replica()];
  const minted = await request(a.url)
    .post('/v1/upload-tokens')
    .set('Authorization', `Bearer ${ALICE}`)
    .send({ title: 'chunks across replicas' });
  const token = minted.body.token as string;
  const data = randomBytes(5 * 1024 * 1024 + 77);
  const first = await request(a.url)
    .post(`/upload?token=${token}`)
    .set('Content-Range', 'part 1/2')
    .attach('holiday.mp4', data.subarray(0, 5 * 1024 * 1024), 'holiday.mp4');
  expect(first.status).toBe(201);
  const second = await request(b.url)
    .post(`/upload?token=${token}`)
    .set('Content-Range', 'part 2/2')
    .attach('holiday.mp4', data.subarray(5 * 1024 * 1024), 'holiday.mp4');
  expect(second.status).toBe(201);
  expect(second.body.videoId).toBe(first.body.videoId);
  expect(inspectVideo(emulator, first.body.videoId as string)).toMatchObject({
    completed: true,
    size: data.length,
    sha256: createHash('sha256').update(data).digest('hex'),
    input: { title: 'chunks across replicas' },
  });
  // The single use is spent: B refuses a new upload with it.
  const again = await request(b.url)
    .post(`/upload?token=${token}`)
    .attach('file', Buffer.from('x'), 'x.mp4');
  expect(again.body.code).toBe('upload_token_used_up');
});
