/**
 * Slow and hostile clients cannot freeze everyone else's uploads (found by an attack on the
 * running relay: 16 uploads trickling a byte every few seconds each held a whole part of
 * UPLOAD_MEMORY_BUDGET from their first byte, and another principal's upload waited without end).
 * Room follows what a client sends: steps for a client that is slow or new, a whole part for one
 * that keeps UPLOAD_MIN_RATE; a principal's share is bounded while others wait; a wait ends at
 * UPLOAD_MEMORY_WAIT_MS with a 503 (and, on tus, the offset); a slow client loses its room first.
 */
import { connect, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { request as undici } from 'undici';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { inspectVideo } from '../helpers/emulator';
import { useEmulator } from '../helpers/fixture';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { auth, createUpload, patch } from '../helpers/resumable';
import { uploadRaw } from '../helpers/upload';
import { eventually } from '../helpers/wait';

const PRINCIPALS = ['alpha', 'bravo', 'charlie', 'delta', 'echo'].map(
  (n) => `${n}-token-0123456789`,
);
const fixture = useEmulator();
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function relayWith(env: Record<string, string>): Promise<TestRelay> {
  const relay = await startTestRelay(fixture.emulator, {
    env: {
      RELAY_API_TOKENS: PRINCIPALS.join(','),
      UPLOAD_MAX_CONCURRENT_PER_CLIENT: '100',
      LOG_LEVEL: 'warn',
      ...env,
    },
  });
  cleanups.push(() => relay.close());
  return relay;
}

/** An upload whose client sends its first byte, then nothing more for now (a byte every few s). */
function trickler(relay: TestRelay, token: string): Socket {
  const { port } = new URL(relay.url);
  const socket = connect(Number(port), '127.0.0.1');
  socket.on('error', () => undefined);
  socket.write(
    `POST /v1/videos HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${token}\r\n` +
      'Content-Type: video/mp4\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n',
  );
  cleanups.push(() => socket.destroy());
  return socket;
}

/** Fails the test promptly instead of at jest's timeout when an answer never comes. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

test('16 trickling uploads from 4 principals in a 64 MiB budget: another principal’s 6 MiB upload completes at once', async () => {
  const relay = await relayWith({ UPLOAD_MEMORY_BUDGET: '64MiB', UPLOAD_PART_SIZE: '16MiB' });
  for (let i = 0; i < 16; i += 1) trickler(relay, PRINCIPALS[i % 4]!);
  await eventually(() => relay.lifecycle.inProgress === 16 && relay.memoryBudget.held === 16, 5000);
  // What they hold is what they sent: steps, not parts.
  expect(relay.memoryBudget.reserved).toBeLessThanOrEqual(16 * 256 * 1024);
  const answer = await within(
    uploadRaw(relay.url, 6 * MiB, { headers: auth(PRINCIPALS[4]!) }),
    15_000,
    'the fifth principal’s upload',
  );
  expect(answer.status).toBe(201);
  expect(inspectVideo(fixture.emulator, answer.body.videoId as string)).toMatchObject({
    completed: true,
    sha256: answer.sha256,
  });
});

describe('a wait for room has a limit (UPLOAD_MEMORY_WAIT_MS): 503 relay_busy, never silence', () => {
  async function fullRelay() {
    const relay = await relayWith({
      UPLOAD_MEMORY_BUDGET: '11MiB',
      UPLOAD_PART_SIZE: '5MiB',
      UPLOAD_MEMORY_WAIT_MS: '300',
    });
    // Another upload's two parts fill the budget's room for parts: its first is on the wire
    // (api.video holds it), its last waits for that one's answer.
    fixture.emulator.gate.hold();
    const holder = uploadRaw(relay.url, 10 * MiB, { headers: auth(PRINCIPALS[0]!) });
    await fixture.emulator.gate.waitForHeld(1);
    await eventually(() => relay.memoryBudget.reserved === 10 * MiB);
    cleanups.push(async () => {
      fixture.emulator.gate.open();
      await holder;
    });
    return relay;
  }

  test('POST /v1/videos: 503 with Retry-After, its container deleted', async () => {
    const relay = await fullRelay();
    const before = new Set(fixture.emulator.videos.all().map((v) => v.videoId));
    const res = await undici(`${relay.url}/v1/videos`, {
      method: 'POST',
      headers: { ...auth(PRINCIPALS[1]!), 'content-type': 'video/mp4' },
      body: randomBytesOf(6 * MiB),
    });
    const body = (await res.body.json()) as { code: string };
    expect([res.statusCode, body.code, res.headers['retry-after']]).toEqual([
      503,
      'relay_busy',
      '5',
    ]);
    // The container made for it is gone.
    const made = fixture.emulator.videos.all().filter((v) => !before.has(v.videoId));
    expect(made.map((v) => v.deleted)).toEqual([true]);
  });

  test('a tus PATCH: 503 with Retry-After and its Upload-Offset; a retry later completes byte-exact', async () => {
    const relay = await relayWith({
      UPLOAD_MEMORY_BUDGET: '11MiB',
      UPLOAD_PART_SIZE: '5MiB',
      UPLOAD_MEMORY_WAIT_MS: '300',
    });
    const data = randomBytesOf(6 * MiB);
    const path = await createUpload(relay.url, data.length, PRINCIPALS[1]);
    fixture.emulator.gate.hold();
    const holder = uploadRaw(relay.url, 10 * MiB, { headers: auth(PRINCIPALS[0]!) });
    await fixture.emulator.gate.waitForHeld(1);
    await eventually(() => relay.memoryBudget.reserved === 10 * MiB);
    const answer = await patch(relay.url, path, 0, data, PRINCIPALS[1]);
    expect([answer.status, JSON.parse(answer.body).code, answer.headers['retry-after']]).toEqual([
      503,
      'relay_busy',
      '5',
    ]);
    const offset = Number(answer.offset);
    expect(offset).toBeGreaterThanOrEqual(0);
    fixture.emulator.gate.open();
    expect((await holder).status).toBe(201);
    const rest = await patch(relay.url, path, offset, data.subarray(offset), PRINCIPALS[1]);
    expect(rest.status).toBe(204);
    expect(inspectVideo(fixture.emulator, rest.headers['upload-video-id'] as string)).toMatchObject(
      {
        completed: true,
        sha256: sha256(data),
      },
    );
  });
});

test('a principal past its share waits behind the others: room it frees goes to them first', async () => {
  const relay = await relayWith({
    UPLOAD_MEMORY_BUDGET: '21MiB',
    UPLOAD_PART_SIZE: '5MiB',
    UPLOAD_MEMORY_PER_CLIENT: '10MiB',
  });
  const { emulator } = fixture;
  emulator.gate.hold();
  // Alpha's uploads take the whole budget while nobody else waits (4 parts on the wire), and its
  // third upload waits for room.
  const alpha = [0, 1, 2].map(() =>
    uploadRaw(relay.url, 12 * MiB, { headers: auth(PRINCIPALS[0]!) }),
  );
  await emulator.gate.waitForHeld(4);
  await eventually(() => relay.memoryBudget.waiting >= 1);
  const alphaWaiting = relay.memoryBudget.waiting;
  // Bravo arrives after alpha's waiting uploads, behind them in line.
  const bravo = uploadRaw(relay.url, 3 * MiB, { headers: auth(PRINCIPALS[1]!) });
  await eventually(() => relay.memoryBudget.waiting === alphaWaiting + 1);
  // One of alpha's parts is acknowledged: its room goes to bravo, past alpha's waiting upload.
  emulator.gate.releaseOne();
  await eventually(() => emulator.gate.held.includes('part 1/1'), 5000);
  emulator.gate.open();
  const answers = await Promise.all([bravo, ...alpha]);
  for (const answer of answers) expect(answer.status).toBe(201);
});

test('a client that falls below UPLOAD_MIN_RATE while others wait loses its room first', async () => {
  const relay = await relayWith({
    UPLOAD_MEMORY_BUDGET: '12MiB',
    UPLOAD_PART_SIZE: '5MiB',
    UPLOAD_MIN_RATE: '1MiB',
  });
  const { emulator } = fixture;
  // Alpha starts fast (a whole part's room, 5 MiB), then stalls after 1 MiB.
  const data = randomBytesOf(12 * MiB);
  const body = new PassThrough();
  const slow = undici(`${relay.url}/v1/videos`, {
    method: 'POST',
    headers: { ...auth(PRINCIPALS[0]!), 'content-type': 'video/mp4' },
    body,
  }).then(
    (r) => r.body.dump(),
    () => undefined,
  );
  body.write(data.subarray(0, MiB));
  await eventually(() => relay.memoryBudget.reserved >= 5 * MiB);
  // Bravo's first part is on the wire; its second needs room that only alpha's can make.
  emulator.gate.hold();
  const bravo = uploadRaw(relay.url, 12 * MiB, { headers: auth(PRINCIPALS[1]!) });
  await emulator.gate.waitForHeld(1);
  await eventually(() => relay.memoryBudget.waiting === 1);
  await within(emulator.gate.waitForHeld(2), 15_000, 'bravo’s second part');
  expect(relay.memoryBudget.counts.revoked).toBe(1);
  emulator.gate.open();
  const answer = await bravo;
  expect(answer.status).toBe(201);
  expect(inspectVideo(emulator, answer.body.videoId as string)).toMatchObject({
    sha256: answer.sha256,
  });
  // Alpha goes on in steps, and completes too.
  body.end(data.subarray(MiB));
  await slow;
});
