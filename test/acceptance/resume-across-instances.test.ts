/**
 * Two relay processes share Redis. tus-js-client uploads 64 MiB to instance A; A is killed with
 * SIGKILL mid-upload; the client resumes against instance B from the offset B reports. The bytes
 * at the emulator are the file's and the part numbers run 1..N without a gap.
 */
import type { RunningEmulator } from '../../src/emulator/app';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { TEST_API_KEY, inspectVideo, startTestEmulator } from '../helpers/emulator';
import { startRelayProcess, type RelayProcess } from '../helpers/process';
import { tusUpload } from '../helpers/tus';

let emulator: RunningEmulator;
const relays: RelayProcess[] = [];
beforeAll(async () => (emulator = await startTestEmulator()));
afterAll(async () => {
  for (const r of relays) await r.stop('SIGKILL');
  await emulator.close();
});

function instance() {
  return startRelayProcess({
    APIVIDEO_API_KEY: TEST_API_KEY,
    APIVIDEO_BASE_URL: emulator.url,
    REDIS_URL: 'redis://127.0.0.1:6379',
    UPLOAD_PART_SIZE: '5MiB',
  }).then((r) => (relays.push(r), r));
}

test('SIGKILL on instance A mid-upload; the client resumes on instance B, byte-exact', async () => {
  const [a, b] = await Promise.all([instance(), instance()]);
  // Slow parts down so the kill lands mid-upload.
  emulator.faults.add({ target: 'part', delayMs: 150, times: 1000 });
  const data = randomBytesOf(64 * MiB);
  let uploadUrl: string | undefined;
  let killed = false;
  const first = await tusUpload(`${a.url}/v1/uploads`, data, {
    chunkSize: 8 * MiB,
    retryDelays: [0, 100],
    onUrl: (url) => (uploadUrl = url),
    onProgress: (sent) => {
      if (!killed && sent >= 24 * MiB) {
        killed = true;
        a.child.kill('SIGKILL');
      }
    },
  }).catch((err: Error) => err);
  expect(first).toBeInstanceOf(Error);
  expect(await a.exited).toBeNull(); // killed by the signal, not exited
  const path = new URL(uploadUrl!).pathname;
  const resumed = await tusUpload(`${b.url}/v1/uploads`, data, {
    uploadUrl: `${b.url}${path}`,
    chunkSize: 8 * MiB,
  });
  emulator.faults.clear();
  const seen = inspectVideo(emulator, resumed.videoId!);
  expect(seen).toMatchObject({ completed: true, size: data.length, sha256: sha256(data) });
  const n = Math.ceil(data.length / (5 * MiB));
  expect(seen.parts.map((p) => p.number)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  expect(seen.parts.at(-1)!.label).toBe(`part ${n}/${n}`);
}, 90_000);
