/**
 * The attack catalogue, continued (issue #24 point 6): one principal filled all of
 * UPLOAD_SESSION_STORE_MAX_BYTES with tails, and every other client's tus upload then had nowhere
 * to keep the bytes between its requests. A principal's tails are now bounded by its share
 * (UPLOAD_MAX_STORED_BYTES_PER_CLIENT), counted exactly across saves and removals, in memory and
 * in Redis.
 */
import { createHash } from 'node:crypto';
import request from 'supertest';
import type { RunningEmulator } from '../../src/emulator/app';
import { MiB, randomBytesOf } from '../helpers/data';
import { startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import {
  TOKEN_A,
  TOKEN_B,
  TUS,
  auth,
  createUpload,
  headOffset,
  patch,
  relayWithRedis,
  type RedisRelay,
} from '../helpers/resumable';

/** The principal a static token stands for, as client-auth names it. */
const principalOf = (token: string) =>
  `token:${createHash('sha256').update(token).digest('hex').slice(0, 12)}`;

let emulator: RunningEmulator;
beforeAll(async () => {
  emulator = await startTestEmulator();
});
afterAll(async () => {
  await emulator?.close();
});

type Store = 'memory' | 'redis';

/** A relay with its sessions and tokens in memory or in Redis (its own key prefix). */
async function withRelay(
  store: Store,
  env: Record<string, string>,
  run: (relay: TestRelay, redis?: RedisRelay) => Promise<void>,
): Promise<void> {
  const settings = { RELAY_API_TOKENS: `${TOKEN_A},${TOKEN_B}`, LOG_LEVEL: 'info', ...env };
  if (store === 'redis') {
    const r = await relayWithRedis(emulator, settings);
    try {
      await run(r.relay, r);
    } finally {
      await r.close();
    }
    return;
  }
  const relay = await startTestRelay(emulator, { env: settings });
  try {
    await run(relay);
  } finally {
    await relay.close();
  }
}

describe.each(['memory', 'redis'] as const)(
  'a principal’s share of the session store (%s)',
  (store) => {
    test('one principal filling its share does not stop another’s upload from keeping its tail; the counts follow every save and removal', async () => {
      // 16 MiB of tails in all; the default share is an eighth, but at least a part (5 MiB).
      await withRelay(store, { UPLOAD_SESSION_STORE_MAX_BYTES: '16MiB' }, async (relay, r) => {
        const sessions = relay.relay.sessions.store;
        const alice = principalOf(TOKEN_A);
        const bob = principalOf(TOKEN_B);
        expect(relay.config.resumable.maxStoredBytesPerClient).toBe(5 * MiB);
        // Alice tries to fill the whole store: four uploads, 4 MiB of tail each.
        const hers = [];
        for (let i = 0; i < 4; i += 1) hers.push(await createUpload(relay.url, 20 * MiB, TOKEN_A));
        const answers = [];
        for (const path of hers)
          answers.push(await patch(relay.url, path, 0, randomBytesOf(4 * MiB)));
        // Bob's upload still keeps its tail (before the fix: 503, offset 0, Alice held it all).
        const his = await createUpload(relay.url, 20 * MiB, TOKEN_B);
        const kept = await patch(relay.url, his, 0, randomBytesOf(4 * MiB), TOKEN_B);
        expect([kept.status, kept.offset]).toEqual([204, String(4 * MiB)]);
        expect(answers.map((a) => [a.status, Number(a.offset)])).toEqual([
          [204, 4 * MiB],
          [503, MiB],
          [503, 0],
          [503, 0],
        ]);
        expect(JSON.parse(answers[1]!.body)).toMatchObject({ code: 'session_store_full' });
        expect(await sessions.heldBytes(alice)).toBe(5 * MiB);
        expect((await headOffset(relay.url, his, TOKEN_B)).offset).toBe(4 * MiB);
        expect(await sessions.heldBytes(bob)).toBe(4 * MiB);
        expect(await sessions.heldBytes()).toBe(9 * MiB);
        // Ending one of her uploads frees its share: her other upload keeps its next bytes.
        expect((await request(relay.url).delete(hers[0]!).set(auth(TOKEN_A)).set(TUS)).status).toBe(
          204,
        );
        expect(await sessions.heldBytes(alice)).toBe(MiB);
        const more = await patch(relay.url, hers[1]!, MiB, randomBytesOf(3 * MiB));
        expect([more.status, more.offset]).toEqual([204, String(4 * MiB)]);
        expect(await sessions.heldBytes(alice)).toBe(4 * MiB);
        // A part's worth goes to api.video: the tail it leaves behind is what is counted.
        const part = await patch(relay.url, hers[1]!, 4 * MiB, randomBytesOf(2 * MiB));
        expect([part.status, part.offset]).toEqual([204, String(6 * MiB)]);
        expect(await sessions.heldBytes(alice)).toBe(MiB);
        for (const path of hers.slice(1))
          await request(relay.url).delete(path).set(auth(TOKEN_A)).set(TUS);
        await request(relay.url).delete(his).set(auth(TOKEN_B)).set(TUS);
        expect(await sessions.heldBytes(alice)).toBe(0);
        expect(await sessions.heldBytes(bob)).toBe(0);
        expect(await sessions.heldBytes()).toBe(0);
        if (r) {
          // A count back at zero leaves no key behind.
          expect(await r.redis.keys(`${r.prefix}owner:*:tail-bytes`)).toEqual([]);
        }
      });
    });
  },
);
