/**
 * Three relay processes sharing Redis behind a round-robin balancer, api.video slow to acknowledge
 * (400 ms a part, as over the internet), tus-js-client as it ships. One instance is killed
 * (SIGKILL) while it has parts on the wire: the survivors take its uploads over from the ledger it
 * saved (each part recorded before it went out), ask api.video what landed, and every upload
 * completes, byte-exact.
 */
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { TEST_API_KEY, inspectVideo } from '../helpers/emulator';
import { useEmulator } from '../helpers/fixture';
import { startRelayProcess, type RelayProcess } from '../helpers/process';
import { testPrefix } from '../helpers/resumable';
import { roundRobin } from '../helpers/tcp-proxy';
import { shippedTusClient } from '../helpers/tus';
import { eventually } from '../helpers/wait';

const TOKEN = 'instance-killed-token-0123';
const UPLOADS = 8;
const SIZE = 40 * MiB;
const fixture = useEmulator();

test(`${UPLOADS} tus uploads over three instances, one killed with parts in flight: all complete byte-exact`, async () => {
  const { emulator } = fixture;
  emulator.faults.add({ target: 'part', delayMs: 400, times: 100_000 });
  const prefix = testPrefix();
  const instances: RelayProcess[] = [];
  let balancer: { url: string; close(): Promise<void> } | undefined;
  try {
    for (let i = 0; i < 3; i += 1)
      instances.push(
        await startRelayProcess({
          APIVIDEO_API_KEY: TEST_API_KEY,
          APIVIDEO_BASE_URL: emulator.url,
          REDIS_URL: 'redis://127.0.0.1:6379',
          REDIS_KEY_PREFIX: prefix,
          RELAY_API_TOKENS: TOKEN,
          UPLOAD_MAX_CONCURRENT_PER_CLIENT: '32',
          LOG_LEVEL: 'info',
        }),
      );
    balancer = await roundRobin(instances.map((r) => Number(new URL(r.url).port)));
    const files = Array.from({ length: UPLOADS }, () => randomBytesOf(SIZE));
    const done = Promise.all(
      files.map((data) => shippedTusClient(`${balancer!.url}/v1/uploads`, data, TOKEN)),
    );
    // Killed as uploads end: last parts (`part N/N`) are on the wire, api.video keeps them while
    // their answers die with the instance.
    const lastParts = () =>
      emulator.stats.partLog.filter((p) => /^part (\d+)\/\1$/.test(p.contentRange ?? '')).length;
    await eventually(() => lastParts() >= 3 && emulator.stats.partsInFlight >= 3, 30_000);
    await instances[0]!.stop('SIGKILL');
    const videoIds = await done;
    for (const [i, videoId] of videoIds.entries())
      expect(inspectVideo(emulator, videoId)).toMatchObject({
        completed: true,
        deleted: false,
        sha256: sha256(files[i]!),
      });
    // The killed instance had uploads in flight, and a survivor settled what it left by asking.
    expect(instances[0]!.output()).toMatch(/resumable upload created/);
    const survivors = instances
      .slice(1)
      .map((r) => r.output())
      .join('');
    expect(survivors).toMatch(/"event":"reconciled"/);
  } finally {
    await balancer?.close();
    await Promise.all(instances.map((r) => r.stop('SIGKILL')));
  }
}, 120_000);
