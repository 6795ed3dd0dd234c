/**
 * api.video misbehaves on part 2 in every way it can; the relay retries and the bytes still arrive
 * exactly. A fault that outlasts the retries ends in a 502 and the container is deleted.
 */
import type { FaultRule } from '../../src/emulator/faults';
import { MiB } from '../helpers/data';
import { inspectVideo } from '../helpers/emulator';
import { useRelay } from '../helpers/fixture';
import { uploadMultipart } from '../helpers/upload';

const fixture = useRelay({ env: { UPSTREAM_MAX_ATTEMPTS: '3', LOG_LEVEL: 'info' } });
const emulator = () => fixture.emulator;

function finishedLine(videoId: string) {
  return fixture.relay.logs().find((l) => l.event === 'upload_finished' && l.videoId === videoId);
}

const survivable: Array<[string, FaultRule]> = [
  [
    'part 2 answered 429 with a retry header',
    { target: 'part', part: 2, status: 429, retryAfter: 1 },
  ],
  ['part 2 answered 500 twice', { target: 'part', part: 2, status: 500, times: 2 }],
  ['part 2 dropped mid-request', { target: 'part', part: 2, drop: true }],
  ['container creation answered 503', { target: 'create', status: 503 }],
];

test.each(survivable)('%s: the upload still completes byte-exact', async (_name, rule) => {
  emulator().faults.add(rule);
  const answer = await uploadMultipart(fixture.url, 12 * MiB);
  expect(answer.status).toBe(201);
  const videoId = answer.body.videoId as string;
  expect(inspectVideo(emulator(), videoId)).toMatchObject({
    completed: true,
    size: 12 * MiB,
    sha256: answer.sha256,
  });
  expect(inspectVideo(emulator(), videoId).parts.map((p) => p.number)).toEqual([1, 2, 3]);
  expect(finishedLine(videoId)).toMatchObject({
    outcome: 'completed',
    retries: rule.times ?? 1,
    parts: 3,
  });
});

test('a 429 waits as long as the header asks', async () => {
  emulator().faults.add({ target: 'part', part: 1, status: 429, retryAfter: 1 });
  const started = Date.now();
  const answer = await uploadMultipart(fixture.url, 1000);
  expect(answer.status).toBe(201);
  expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
});

test('a fault that outlasts the retries: 502 with the upstream title, and the container is deleted', async () => {
  emulator().faults.add({ target: 'part', part: 2, status: 500, times: 3 });
  const answer = await uploadMultipart(fixture.url, 12 * MiB);
  expect(answer.status).toBe(502);
  expect(answer.body).toMatchObject({ code: 'upstream_failed', status: 502 });
  expect(answer.body.detail).toContain('Injected fault.');
  const created = emulator().videos.all().at(-1)!;
  expect(inspectVideo(emulator(), created.videoId)).toMatchObject({
    deleted: true,
    completed: false,
  });
  expect(finishedLine(created.videoId)).toMatchObject({ outcome: 'upstream_failed' });
});

test('a 4xx that retrying cannot mend is not retried', async () => {
  emulator().faults.add({ target: 'part', part: 1, status: 400, times: 5 });
  emulator().stats.reset();
  const answer = await uploadMultipart(fixture.url, 1000);
  expect(answer.body).toMatchObject({ status: 502, code: 'upstream_failed' });
  expect(emulator().stats.partRequests).toBe(1);
});

describe('parts in flight', () => {
  // 30 MiB + 1 in 5 MiB parts: six full parts, then part 7/7 of one byte. The emulator holds every
  // part until the test lets one go, and the test lets one go only once as many parts as the
  // relay may send wait together: the count is reached however slow the machine, and a relay that
  // sent one part more would be seen holding it.
  const FULL_PARTS = 6;

  test.each([1, 2, 4])(
    'concurrency %i: the emulator sees exactly that many parts at once',
    async (concurrency) => {
      await fixture.withRelay(
        { env: { UPLOAD_PART_CONCURRENCY: String(concurrency), LOG_LEVEL: 'warn' } },
        async (own) => {
          const { gate, stats } = emulator();
          stats.reset();
          gate.hold();
          const upload = uploadMultipart(own.url, FULL_PARTS * 5 * MiB + 1);
          for (let released = 0; released <= FULL_PARTS; released++) {
            // The last part goes alone, once every other part is answered.
            const expected = Math.min(concurrency, FULL_PARTS - released) || 1;
            await gate.waitForHeld(expected);
            expect(gate.held).toHaveLength(expected);
            gate.releaseOne();
          }
          const answer = await upload;
          expect(answer.status).toBe(201);
          expect(inspectVideo(emulator(), answer.body.videoId as string)).toMatchObject({
            completed: true,
            sha256: answer.sha256,
          });
          expect(stats.maxPartsInFlight).toBe(concurrency);
          const last = stats.partLog.at(-1)!;
          expect(last.contentRange).toBe('part 7/7');
          expect(last.othersInFlight).toBe(0);
        },
      );
    },
  );
});
