/**
 * SIGTERM in the middle of a 200 MiB upload: readiness turns 503, new uploads are refused with 503
 * and Retry-After, the upload in progress completes byte-exact, and the process exits 0.
 */
import { request } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import { MiB, randomStream } from '../helpers/data';
import { TEST_API_KEY, inspectVideo, startTestEmulator } from '../helpers/emulator';
import { eventually } from '../helpers/wait';
import { startRelayProcess } from '../helpers/process';
import { uploadRaw } from '../helpers/upload';

let emulator: RunningEmulator;
beforeAll(async () => (emulator = await startTestEmulator()));
afterAll(() => emulator.close());
afterEach(() => emulator.faults.clear());

function startBigUpload(url: string, size: number) {
  const file = randomStream(size, MiB);
  const answer = request(`${url}/v1/videos?title=draining`, {
    method: 'POST',
    headers: { 'content-type': 'video/mp4', 'content-length': String(size) },
    body: file,
  }).then(async (res) => ({
    status: res.statusCode,
    body: (await res.body.json()) as Record<string, unknown>,
  }));
  return { file, answer };
}

test('an upload in progress finishes; new ones get 503; exit 0', async () => {
  const relay = await startRelayProcess({
    APIVIDEO_API_KEY: TEST_API_KEY,
    APIVIDEO_BASE_URL: emulator.url,
    SHUTDOWN_GRACE_MS: '60000',
  });
  emulator.faults.add({ target: 'part', delayMs: 300, times: 1000 });
  const big = startBigUpload(relay.url, 200 * MiB);
  await eventually(() => emulator.stats.partRequests > 0);
  relay.child.kill('SIGTERM');
  await eventually(() => relay.output().includes('draining'));
  const refused = await uploadRaw(relay.url, 1000);
  expect(refused.status).toBe(503);
  expect(refused.headers['retry-after']).toBe('5');
  expect(refused.body).toMatchObject({ code: 'shutting_down' });
  expect((await request(`${relay.url}/readyz`)).statusCode).toBe(503);
  const done = await big.answer;
  expect(done.status).toBe(201);
  expect(inspectVideo(emulator, done.body.videoId as string)).toMatchObject({
    completed: true,
    size: 200 * MiB,
    sha256: big.file.sha256(),
  });
  expect(await relay.exited).toBe(0);
}, 60_000);

test('past SHUTDOWN_GRACE_MS the upload is aborted with clean-up; still exit 0', async () => {
  const relay = await startRelayProcess({
    APIVIDEO_API_KEY: TEST_API_KEY,
    APIVIDEO_BASE_URL: emulator.url,
    SHUTDOWN_GRACE_MS: '500',
  });
  emulator.faults.add({ target: 'part', delayMs: 1000, times: 1000 });
  emulator.stats.reset();
  const big = startBigUpload(relay.url, 200 * MiB);
  await eventually(() => emulator.stats.partRequests > 0);
  const videoId = emulator.videos.all().at(-1)!.videoId;
  relay.child.kill('SIGTERM');
  const answer = await big.answer.catch((err: Error) => ({
    status: 0,
    body: { error: err.message },
  }));
  if (answer.status !== 0) expect(answer.body).toMatchObject({ code: 'shutting_down' });
  expect(await relay.exited).toBe(0);
  expect(inspectVideo(emulator, videoId)).toMatchObject({ deleted: true, completed: false });
}, 60_000);
