/**
 * tus-js-client as it ships (its default `retryDelays`, first retry at 0 ms) on a network that
 * cuts every upload's PATCH once, with api.video slow to acknowledge parts: the client HEADs and
 * resumes at once, while the relay still has parts of the cut request on the wire. The relay
 * answers that HEAD only once those parts are settled, and sends a part number again only with
 * its bytes, so every upload completes, byte-exact (the emulator refuses a part number re-sent
 * with other bytes). In memory and with sessions in Redis.
 */
import type { AddressInfo } from 'node:net';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { inspectVideo } from '../helpers/emulator';
import { useEmulator } from '../helpers/fixture';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { testPrefix, waitForRedis } from '../helpers/resumable';
import { patchCuttingProxy } from '../helpers/tcp-proxy';
import { shippedTusClient } from '../helpers/tus';

const TOKEN = 'quick-resume-token-012345';
const UPLOADS = 10;
const SIZE = 30 * MiB;
const fixture = useEmulator();

describe.each([
  ['sessions in memory', {}],
  ['sessions in Redis', { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_KEY_PREFIX: testPrefix() }],
])('%s', (_name, env: Record<string, string>) => {
  test(`${UPLOADS} uploads, each PATCH cut once, parts acknowledged in 600 ms: ${UPLOADS} of ${UPLOADS} complete, byte-exact`, async () => {
    const { emulator } = fixture;
    emulator.faults.add({ target: 'part', delayMs: 600, times: 10_000 });
    // Parts grow (5, 10, then 16 MiB) as they do for a fast client: a part cut again to the
    // sizer's fresh 5 MiB would carry other bytes under its number.
    let relay: TestRelay | undefined;
    const proxy = { close: async () => undefined } as { close(): Promise<void> };
    try {
      relay = await startTestRelay(emulator, {
        env: {
          RELAY_API_TOKENS: TOKEN,
          UPLOAD_PART_SIZE: '16MiB',
          UPLOAD_MAX_CONCURRENT_PER_CLIENT: '32',
          LOG_LEVEL: 'warn',
          ...env,
        },
      });
      if (env.REDIS_URL) await waitForRedis(relay);
      const cutting = await patchCuttingProxy(
        (relay.server.address() as AddressInfo).port,
        12 * MiB,
      );
      proxy.close = () => cutting.close();
      const files = Array.from({ length: UPLOADS }, () => randomBytesOf(SIZE));
      const videoIds = await Promise.all(
        files.map((data) => shippedTusClient(`${cutting.url}/v1/uploads`, data, TOKEN)),
      );
      expect(cutting.cut()).toHaveLength(UPLOADS);
      for (const [i, videoId] of videoIds.entries())
        expect(inspectVideo(emulator, videoId)).toMatchObject({
          completed: true,
          deleted: false,
          sha256: sha256(files[i]!),
        });
    } finally {
      await proxy.close();
      await relay?.close();
    }
  });
});
