/**
 * SIGTERM in the middle of an upload: readiness turns 503, new uploads are refused with 503 and
 * Retry-After, the upload in progress completes byte-exact, and the process exits 0. The emulator
 * holds the upload's parts while the test looks, so "in progress" never depends on a timer.
 */
import { request } from 'undici';
import { MiB, randomStream } from '../helpers/data';
import { TEST_API_KEY, inspectVideo } from '../helpers/emulator';
import { useEmulator } from '../helpers/fixture';
import { startRelayProcess, type RelayProcess } from '../helpers/process';
import { RawHttp } from '../helpers/raw-http';
import { uploadRaw } from '../helpers/upload';
import { eventually } from '../helpers/wait';

const fixture = useEmulator();

/** A relay process for one test, killed in `finally` however the test ends. */
async function withRelayProcess(
  env: Record<string, string>,
  use: (relay: RelayProcess) => Promise<void>,
): Promise<void> {
  const relay = await startRelayProcess({
    APIVIDEO_API_KEY: TEST_API_KEY,
    APIVIDEO_BASE_URL: fixture.emulator.url,
    UPLOAD_PART_SIZE: '5MiB',
    ...env,
  });
  try {
    await use(relay);
  } finally {
    await relay.stop('SIGKILL');
  }
}

test('an upload in progress finishes; new ones get 503; exit 0', async () => {
  await withRelayProcess({ SHUTDOWN_GRACE_MS: '60000' }, async (relay) => {
    const { gate } = fixture.emulator;
    gate.hold();
    const size = 24 * MiB;
    const file = randomStream(size, MiB);
    const big = request(`${relay.url}/v1/videos?title=draining`, {
      method: 'POST',
      headers: { 'content-type': 'video/mp4', 'content-length': String(size) },
      body: file,
    }).then(async (res) => ({
      status: res.statusCode,
      body: (await res.body.json()) as Record<string, unknown>,
    }));
    await gate.waitForHeld(1);
    relay.child.kill('SIGTERM');
    await eventually(() => relay.output().includes('draining'));
    const refused = await uploadRaw(relay.url, 1000);
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('5');
    expect(refused.body).toMatchObject({ code: 'shutting_down' });
    expect((await request(`${relay.url}/readyz`)).statusCode).toBe(503);
    gate.open();
    const done = await big;
    expect(done.status).toBe(201);
    expect(inspectVideo(fixture.emulator, done.body.videoId as string)).toMatchObject({
      completed: true,
      size,
      sha256: file.sha256(),
    });
    expect(await relay.exited).toBe(0);
  });
});

test('past SHUTDOWN_GRACE_MS the upload is aborted with clean-up: 503 shutting_down; exit 0', async () => {
  // No idle timeout: the client stalls on purpose, and only the grace may end its upload.
  const env = { SHUTDOWN_GRACE_MS: '500', UPLOAD_IDLE_TIMEOUT_MS: '0' };
  await withRelayProcess(env, async (relay) => {
    const { gate, videos } = fixture.emulator;
    gate.hold();
    const client = await RawHttp.open(relay.url);
    try {
      client.head('/v1/videos?title=cut', {
        'Content-Type': 'video/mp4',
        'Content-Length': String(20 * MiB),
      });
      // All of it read by the relay (under its buffer), so the answer comes on a clean close.
      await client.write(Buffer.alloc(6 * MiB, 1));
      await gate.waitForHeld(1);
      const videoId = videos.all().at(-1)!.videoId;
      relay.child.kill('SIGTERM');
      const answer = await client.answer(20_000);
      expect(answer.status).toBe(503);
      expect(JSON.parse(answer.body)).toMatchObject({ code: 'shutting_down' });
      expect(await relay.exited).toBe(0);
      expect(inspectVideo(fixture.emulator, videoId)).toMatchObject({
        deleted: true,
        completed: false,
      });
    } finally {
      client.destroy();
    }
  });
});
