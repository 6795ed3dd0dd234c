/**
 * UPLOAD_MEMORY_BUDGET over real sockets: many uploads on few part slots all finish, a full
 * budget holds uploads back instead of refusing them, a wait for room is not client idleness,
 * and resumable (tus) uploads draw on the same budget. Checked through the budget's own
 * accounting (its peaks) and byte-exact at the emulator.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { Readable } from 'node:stream';
import { request } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import { MiB } from '../helpers/data';
import { inspectVideo, startTestEmulator } from '../helpers/emulator';
import {
  TOKEN_A,
  auth,
  createUpload,
  patch,
  relayWithRedis,
  type RedisRelay,
} from '../helpers/resumable';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { uploadRaw } from '../helpers/upload';
import { Multipart } from '../helpers/multipart';
import { mintUploadToken } from '../helpers/upload-tokens';
import { eventually } from '../helpers/wait';
import { partRuleBroken } from '../../src/engine/part-size';
import { STEP_BYTES } from '../../src/engine/memory-budget';
import { UPLOAD_OVERHEAD_BYTES } from '../../src/kernel/sizes';

let emulator: RunningEmulator;
beforeAll(async () => (emulator = await startTestEmulator()));
afterAll(() => emulator.close());

/**
 * A raw upload whose client trickles 16 KiB every 100 ms (never idle) until `finish()`, then
 * sends the rest at once: it holds a part's room for as long as the test wants.
 */
function heldUpload(url: string, size: number, headers: Record<string, string> = {}) {
  const data = randomFillSync(Buffer.allocUnsafe(size));
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let sent = 0;
  async function* body() {
    let done = false;
    void released.then(() => (done = true));
    while (!done && sent < size - 16 * 1024) {
      yield data.subarray(sent, sent + 16 * 1024);
      sent += 16 * 1024;
      await Promise.race([released, new Promise((r) => setTimeout(r, 100))]);
    }
    yield data.subarray(sent);
  }
  const answer = request(`${url}/v1/videos`, {
    method: 'POST',
    headers: { 'content-type': 'video/mp4', 'content-length': String(size), ...headers },
    body: Readable.from(body()),
  }).then(async (r) => ({
    status: r.statusCode,
    body: (await r.body.json()) as { videoId: string },
  }));
  return {
    answer,
    sha256: createHash('sha256').update(data).digest('hex'),
    finish: release,
    sentSoFar: () => sent,
  };
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await request(`${url}/metrics`)).body.text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
}

// Two 5 MiB parts and the uploads' own costs (128 KiB each, up to 1 MiB: the budget less two parts).
describe('POST /v1/videos on a budget of two 5 MiB parts and the uploads in progress', () => {
  let relay: TestRelay;
  beforeAll(
    async () =>
      (relay = await startTestRelay(emulator, {
        env: {
          UPLOAD_PART_SIZE: '5MiB',
          UPLOAD_MEMORY_BUDGET: '11MiB',
          UPLOAD_MAX_CONCURRENT_PER_CLIENT: '100',
          UPLOAD_IDLE_TIMEOUT_MS: '1000',
          LOG_LEVEL: 'info',
        },
      })),
  );
  afterAll(() => relay.close());

  test('6 uploads of 12 MiB (3 parts each, 2 slots): none refused, no deadlock, byte-exact, the budget never exceeded', async () => {
    const budget = relay.memoryBudget;
    const answers = await Promise.all(
      Array.from({ length: 6 }, () => uploadRaw(relay.url, 12 * MiB + 12345)),
    );
    for (const answer of answers) {
      expect(answer.status).toBe(201);
      const seen = inspectVideo(emulator, answer.body.videoId as string);
      expect(seen).toMatchObject({
        completed: true,
        size: 12 * MiB + 12345,
        sha256: answer.sha256,
      });
      expect(
        partRuleBroken(
          seen.parts.map((p) => p.size),
          5 * MiB,
        ),
      ).toBeUndefined();
    }
    // Its own accounting: parts and the uploads' costs never above the budget together, and the
    // budget was what held uploads back (two parts at once, a third never beside them and the costs).
    expect(budget.peak.atGrant).toBeLessThanOrEqual(11 * MiB);
    expect(budget.peak.held).toBeLessThanOrEqual(budget.peak.reserved);
    expect(budget.peak.reserved).toBeGreaterThanOrEqual(10 * MiB);
    expect(budget.peak.overhead).toBeGreaterThanOrEqual(3 * UPLOAD_OVERHEAD_BYTES);
    expect(budget.peak.waiting).toBeGreaterThan(0);
    expect(budget.snapshot()).toMatchObject({ reserved: 0, overhead: 0, held: 0, waiting: 0 });
  });

  test('a full budget makes a new upload wait (no 503), longer than the idle timeout, then it completes', async () => {
    const budget = relay.memoryBudget;
    // Two uploads take both slots (each has a 5 MiB part open) and keep them.
    const holders = [heldUpload(relay.url, 6 * MiB), heldUpload(relay.url, 6 * MiB)];
    await eventually(() => budget.reserved === 10 * MiB);
    const waiting = uploadRaw(relay.url, 3 * MiB);
    await eventually(() => budget.waiting === 1);
    expect(await metric(relay.url, 'relay_memory_waiting_uploads')).toBe(1);
    // The waiter holds a step's room at most (its first bytes), not a whole part.
    const reserved = await metric(relay.url, 'relay_memory_reserved_bytes');
    expect(reserved).toBeGreaterThanOrEqual(10 * MiB);
    expect(reserved).toBeLessThanOrEqual(10 * MiB + STEP_BYTES);
    expect(await metric(relay.url, 'relay_memory_budget_bytes')).toBe(11 * MiB);
    // The waiting upload is counted too: its connection costs memory whether or not it has room.
    expect(await metric(relay.url, 'relay_memory_overhead_bytes')).toBe(3 * UPLOAD_OVERHEAD_BYTES);
    // Held back for longer than UPLOAD_IDLE_TIMEOUT_MS (1 s): waiting for room is not idleness.
    await new Promise((r) => setTimeout(r, 1500));
    expect(budget.waiting).toBe(1);
    holders.forEach((h) => h.finish());
    const answer = await waiting;
    expect(answer.status).toBe(201);
    expect(inspectVideo(emulator, answer.body.videoId as string)).toMatchObject({
      completed: true,
      sha256: answer.sha256,
    });
    for (const holder of holders) {
      const held = await holder.answer;
      expect(held.status).toBe(201);
      expect(inspectVideo(emulator, held.body.videoId)).toMatchObject({ sha256: holder.sha256 });
    }
    expect(budget.peak.atGrant).toBeLessThanOrEqual(11 * MiB);
    await eventually(() => budget.overhead === 0);
  });

  test('an upload that leaves while waiting for room gives its place up and holds nothing', async () => {
    const budget = relay.memoryBudget;
    const holders = [heldUpload(relay.url, 6 * MiB), heldUpload(relay.url, 6 * MiB)];
    await eventually(() => budget.reserved === 10 * MiB);
    const controller = new AbortController();
    const gone = request(`${relay.url}/v1/videos`, {
      method: 'POST',
      headers: { 'content-type': 'video/mp4', 'content-length': String(3 * MiB) },
      body: Readable.from(
        (async function* () {
          // More than a step, fast: it asks for a whole part's room, and waits for it.
          yield randomFillSync(Buffer.allocUnsafe(STEP_BYTES + 16 * 1024));
          await new Promise(() => undefined); // never more
        })(),
      ),
      signal: controller.signal,
    }).catch(() => undefined);
    await eventually(() => budget.waiting === 1);
    controller.abort();
    await gone;
    await eventually(() => budget.waiting === 0);
    await eventually(() => budget.overhead === 2 * UPLOAD_OVERHEAD_BYTES); // the leaver's cost went back
    holders.forEach((h) => h.finish());
    for (const holder of holders) expect((await holder.answer).status).toBe(201);
    await eventually(() => budget.reserved === 0 && budget.overhead === 0);
  });
});

describe('resumable uploads draw on the same budget', () => {
  let redisRelay: RedisRelay;
  beforeAll(
    async () =>
      (redisRelay = await relayWithRedis(emulator, {
        UPLOAD_MEMORY_BUDGET: '5MiB',
        UPLOAD_MAX_CONCURRENT_PER_CLIENT: '100',
      })),
  );
  afterAll(() => redisRelay.close());

  test('a PATCH waits for room held by a one-request upload, then completes byte-exact', async () => {
    const { relay } = redisRelay;
    const budget = relay.memoryBudget;
    const holder = heldUpload(relay.url, 6 * MiB, auth(TOKEN_A));
    await eventually(() => budget.reserved === 5 * MiB);
    const size = 6 * MiB + 7;
    const data = randomFillSync(Buffer.allocUnsafe(size));
    const path = await createUpload(relay.url, size);
    const patching = patch(relay.url, path, 0, data);
    await eventually(() => budget.waiting === 1);
    expect(budget.reserved).toBe(5 * MiB);
    holder.finish();
    const answer = await patching;
    expect(answer.status).toBe(204);
    expect(Number(answer.offset)).toBe(size);
    const videoId = answer.headers['upload-video-id'] as string;
    expect(inspectVideo(emulator, videoId)).toMatchObject({
      completed: true,
      size,
      sha256: createHash('sha256').update(data).digest('hex'),
    });
    expect((await holder.answer).status).toBe(201);
    expect(budget.peak.reserved).toBeLessThanOrEqual(5 * MiB);
    expect(budget.peak.held).toBeLessThanOrEqual(budget.peak.reserved);
  });

  test('a resumed upload (bytes carried over from an earlier PATCH) stays within the budget', async () => {
    const { relay } = redisRelay;
    const budget = relay.memoryBudget;
    const size = 11 * MiB;
    const data = randomFillSync(Buffer.allocUnsafe(size));
    const path = await createUpload(relay.url, size);
    // 3 MiB first: less than a part, kept as the tail; then the rest in small PATCHes.
    let offset = 0;
    for (const end of [3 * MiB, 3 * MiB + 100, 8 * MiB, size]) {
      const answer = await patch(relay.url, path, offset, data.subarray(offset, end));
      expect(answer.status).toBe(204);
      offset = Number(answer.offset);
      expect(offset).toBe(end);
    }
    expect(budget.peak.reserved).toBeLessThanOrEqual(5 * MiB);
    expect(budget.snapshot()).toMatchObject({ reserved: 0, held: 0 });
    const head = await request(`${relay.url}${path}`, {
      method: 'HEAD',
      headers: { ...auth(TOKEN_A), 'Tus-Resumable': '1.0.0' },
    });
    await head.body.dump();
    const videoId = head.headers['upload-video-id'] as string;
    expect(inspectVideo(emulator, videoId)).toMatchObject({
      completed: true,
      sha256: createHash('sha256').update(data).digest('hex'),
    });
  });
});

describe("every route's upload requests count their own cost while they last", () => {
  let redisRelay: RedisRelay;
  beforeAll(
    async () =>
      (redisRelay = await relayWithRedis(emulator, {
        UPLOAD_PART_SIZE: '5MiB',
        UPLOAD_MEMORY_BUDGET: '20MiB',
        UPLOAD_MAX_CONCURRENT_PER_CLIENT: '100',
      })),
  );
  afterAll(() => redisRelay.close());

  /**
   * A request whose body sends `head` and the first 64 KiB of `data`, then the rest once told;
   * `answer` is its status, the body read to its end.
   */
  function held(
    method: string,
    path: string,
    headers: Record<string, string>,
    head: Buffer,
    data: Buffer,
    tail: Buffer,
  ) {
    let finish!: () => void;
    const finished = new Promise<void>((r) => (finish = r));
    async function* body() {
      yield head;
      yield data.subarray(0, 64 * 1024);
      await finished;
      yield data.subarray(64 * 1024);
      yield tail;
    }
    const length = head.length + data.length + tail.length;
    const answer = request(`${redisRelay.relay.url}${path}`, {
      method,
      headers: { ...headers, 'content-length': String(length) },
      body: Readable.from(body()),
    }).then(async (r) => (await r.body.dump(), r.statusCode));
    return { answer, finish };
  }

  /** Sends a held request; while it holds file bytes its cost is counted, and after, not. */
  async function whileHeld(...args: Parameters<typeof held>): Promise<number> {
    const { relay } = redisRelay;
    const budget = relay.memoryBudget;
    const h = held(...args);
    try {
      await eventually(() => budget.held > 0);
      expect(budget.overhead).toBe(UPLOAD_OVERHEAD_BYTES);
      expect(await metric(relay.url, 'relay_memory_overhead_bytes')).toBe(UPLOAD_OVERHEAD_BYTES);
    } finally {
      h.finish();
    }
    const status = await h.answer;
    await eventually(() => budget.overhead === 0);
    return status;
  }

  const none = Buffer.alloc(0);

  test('POST /v1/videos (raw body)', async () => {
    const data = randomFillSync(Buffer.allocUnsafe(MiB));
    const headers = { ...auth(TOKEN_A), 'content-type': 'video/mp4' };
    expect(await whileHeld('POST', '/v1/videos', headers, none, data, none)).toBe(201);
  });

  test('a tus PATCH', async () => {
    const { relay } = redisRelay;
    const data = randomFillSync(Buffer.allocUnsafe(MiB));
    const path = await createUpload(relay.url, data.length);
    expect(relay.memoryBudget.overhead).toBe(0); // creation ended: not counted any more
    const headers = {
      ...auth(TOKEN_A),
      'Tus-Resumable': '1.0.0',
      'Upload-Offset': '0',
      'content-type': 'application/offset+octet-stream',
    };
    expect(await whileHeld('PATCH', path, headers, none, data, none)).toBe(204);
  });

  test('from admission: a multipart POST /v1/videos still in its fields (no part yet) is counted', async () => {
    const budget = redisRelay.relay.memoryBudget;
    const form = new Multipart();
    const data = randomFillSync(Buffer.allocUnsafe(MiB));
    const tail = Buffer.concat([form.fileHead(), data, form.fileEnd(), form.end()]);
    const headers = { ...auth(TOKEN_A), 'content-type': form.contentType };
    const h = held('POST', '/v1/videos', headers, form.field('title', 'fields first'), none, tail);
    try {
      await eventually(() => budget.overhead === UPLOAD_OVERHEAD_BYTES);
      expect(budget.snapshot()).toMatchObject({ reserved: 0, held: 0 });
    } finally {
      h.finish();
    }
    expect(await h.answer).toBe(201);
    await eventually(() => budget.overhead === 0);
  });

  test('a request refused after admission (a tus PATCH at the wrong offset) gives its cost back', async () => {
    const { relay } = redisRelay;
    const path = await createUpload(relay.url, MiB);
    const answer = await patch(relay.url, path, 5, Buffer.alloc(10));
    expect(answer.status).toBe(409);
    await eventually(() => relay.memoryBudget.overhead === 0);
  });

  test.each([
    ['in its form fields', 'fields'],
    ['with a part half sent', 'part'],
  ])('a client that leaves %s gives its cost and its room back', async (_step, step) => {
    const { relay } = redisRelay;
    const budget = relay.memoryBudget;
    const form = new Multipart();
    const controller = new AbortController();
    const gone = request(`${relay.url}/v1/videos`, {
      method: 'POST',
      headers: {
        ...auth(TOKEN_A),
        'content-type': form.contentType,
        'content-length': String(10 * MiB),
      },
      body: Readable.from(
        (async function* () {
          yield form.field('title', 'leaves');
          if (step === 'part') {
            yield form.fileHead();
            yield randomFillSync(Buffer.allocUnsafe(MiB));
          }
          await new Promise(() => undefined); // never more
        })(),
      ),
      signal: controller.signal,
    }).catch(() => undefined);
    await eventually(() =>
      step === 'part' ? budget.held > 0 : budget.overhead === UPLOAD_OVERHEAD_BYTES,
    );
    controller.abort();
    await gone;
    await eventually(() => budget.overhead === 0 && budget.reserved === 0 && budget.held === 0);
  });

  test("api.video's POST /upload?token=", async () => {
    const minted = await mintUploadToken(redisRelay.relay.url, TOKEN_A);
    const form = new Multipart();
    const data = randomFillSync(Buffer.allocUnsafe(MiB));
    const tail = Buffer.concat([form.fileEnd(), form.end()]);
    const headers = { 'content-type': form.contentType };
    const path = `/upload?token=${minted.token}`;
    expect(await whileHeld('POST', path, headers, form.fileHead(), data, tail)).toBe(201);
  });
});
