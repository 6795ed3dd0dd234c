/**
 * A 120 MiB chunk on `POST /upload?token=` goes to api.video as one part, streamed through: the
 * relay (its own process) never holds the chunk, so its memory grows by far less than the chunk.
 * A relay that buffered the chunk to send it as one part would grow by at least 120 MiB.
 */
import { request } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import { MiB, randomStream } from '../helpers/data';
import { TEST_API_KEY, inspectVideo, startTestEmulator } from '../helpers/emulator';
import { startRelayProcess, type RelayProcess } from '../helpers/process';
import { multipartAround } from '../helpers/upload';

const SIZE = 120 * MiB;
const BACKEND = 'backend-token-0123456789';
// Busboy parsing and undici writing, plus garbage V8 has not collected yet (see backpressure.test.ts).
const BOUND = 64 * MiB;

let emulator: RunningEmulator;
let relay: RelayProcess;
beforeAll(async () => {
  emulator = await startTestEmulator();
  relay = await startRelayProcess({
    APIVIDEO_API_KEY: TEST_API_KEY,
    APIVIDEO_BASE_URL: emulator.url,
    RELAY_API_TOKENS: BACKEND,
  });
});
afterAll(async () => {
  await relay?.stop();
  await emulator.close();
});

async function mint(): Promise<string> {
  const res = await request(`${relay.url}/v1/upload-tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${BACKEND}`, 'content-type': 'application/json' },
    body: '{}',
  });
  return ((await res.body.json()) as { token: string }).token;
}

async function chunk(token: string, size: number) {
  const file = randomStream(size, MiB);
  const form = multipartAround(file, size, { fieldName: 'clip.mp4' });
  const res = await request(`${relay.url}/upload?token=${token}`, {
    method: 'POST',
    headers: {
      'content-type': form.contentType,
      'content-length': String(form.length),
      'content-range': 'part 1/1',
    },
    body: form.body,
  });
  return { status: res.statusCode, body: (await res.body.json()) as { videoId: string }, file };
}

test('a 120 MiB chunk is one part at api.video, byte-exact, and is never held whole', async () => {
  // Warm up the code paths, so the baseline includes them.
  expect((await chunk(await mint(), 1000)).status).toBe(201);
  await new Promise((r) => setTimeout(r, 300));
  const idle = relay.rss();
  let peak = idle;
  const sampler = setInterval(() => (peak = Math.max(peak, relay.rss())), 25);
  const answer = await chunk(await mint(), SIZE);
  clearInterval(sampler);
  expect(answer.status).toBe(201);
  const seen = inspectVideo(emulator, answer.body.videoId);
  expect(seen).toMatchObject({ completed: true, size: SIZE, sha256: answer.file.sha256() });
  expect(seen.parts.map((p) => [p.number, p.size, p.label])).toEqual([[1, SIZE, 'part 1/1']]);
  const growth = peak - idle;
  console.log(
    `relay RSS idle ${(idle / MiB).toFixed(0)} MiB, peak ${(peak / MiB).toFixed(0)} MiB, growth ${(growth / MiB).toFixed(0)} MiB for a ${SIZE / MiB} MiB chunk (bound ${BOUND / MiB} MiB)`,
  );
  expect(growth).toBeLessThanOrEqual(BOUND);
}, 120_000);
