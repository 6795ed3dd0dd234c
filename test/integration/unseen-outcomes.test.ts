/**
 * Outcomes the relay does not see: api.video keeps a part and its answer is lost (a reset, a proxy
 * timeout). On every route the relay asks api.video (`GET /videos/{id}/status`) instead of
 * guessing: a complete source is a completion (the answer, the outcome, the webhook), never a
 * failure, and its video is never deleted; a part number goes out again only with its own bytes.
 */
import { PassThrough } from 'node:stream';
import request from 'supertest';
import type { UploadOutcome } from '../../src/engine/outcome';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { inspectVideo } from '../helpers/emulator';
import { useRelay } from '../helpers/fixture';
import { TUS, auth, createUpload, headOffset, patch } from '../helpers/resumable';
import { uploadMultipart } from '../helpers/upload';
import { mintUploadToken, postToUpload } from '../helpers/upload-tokens';

const TOKEN = 'unseen-outcomes-token-0123';
const outcomes: UploadOutcome[] = [];
const fixture = useRelay({
  env: { RELAY_API_TOKENS: TOKEN, UPLOAD_PART_SIZE: '5MiB' },
  outcomeSinks: [{ record: async (outcome) => void outcomes.push(outcome) }],
});

beforeEach(() => {
  outcomes.length = 0;
  fixture.emulator.stats.reset();
  fixture.emulator.requestLog.length = 0;
});

const outcomesOf = (videoId: string) => outcomes.filter((o) => o.videoId === videoId);
const asked = (videoId: string) =>
  fixture.emulator.requestLog.filter(
    (r) => r.method === 'GET' && r.url === `/videos/${videoId}/status`,
  ).length;
const deletes = () => fixture.emulator.requestLog.filter((r) => r.method === 'DELETE').length;

/** The Content-Ranges api.video saw for a video, in order: a re-sent part shows up twice. */
const ranges = (videoId: string) =>
  fixture.emulator.stats.partLog.filter((p) => p.videoId === videoId).map((p) => p.contentRange);

describe('the last part is kept but its answer is lost', () => {
  test('POST /v1/videos: 201 with the video, complete, kept, upload.completed once', async () => {
    fixture.emulator.faults.add({ target: 'part', part: 3, loseAnswer: true });
    const answer = await uploadMultipart(fixture.url, 11 * MiB, {
      headers: auth(TOKEN),
    });
    expect(answer.status).toBe(201);
    const videoId = answer.body.videoId as string;
    expect(inspectVideo(fixture.emulator, videoId)).toMatchObject({
      completed: true,
      deleted: false,
      sha256: answer.sha256,
    });
    // Sent once, answer lost; sent again, "already uploaded"; then api.video was asked.
    expect(ranges(videoId).filter((r) => r === 'part 3/3')).toHaveLength(2);
    expect(asked(videoId)).toBeGreaterThanOrEqual(1);
    expect(deletes()).toBe(0);
    expect(outcomesOf(videoId)).toEqual([
      expect.objectContaining({ kind: 'completed', bytesAcknowledged: 11 * MiB, parts: 3 }),
    ]);
  });

  test('POST /upload?token= with a whole file: 201, complete, kept', async () => {
    const { token } = await mintUploadToken(fixture.url, TOKEN);
    fixture.emulator.faults.add({ target: 'part', part: 2, loseAnswer: true });
    const data = randomBytesOf(6 * MiB);
    const answer = await postToUpload(fixture.url, token, data);
    expect(answer.status).toBe(201);
    const videoId = answer.body.videoId as string;
    expect(inspectVideo(fixture.emulator, videoId)).toMatchObject({
      completed: true,
      deleted: false,
      sha256: sha256(data),
    });
    expect(deletes()).toBe(0);
    expect(outcomesOf(videoId)).toEqual([expect.objectContaining({ kind: 'completed' })]);
  });

  test('POST /upload?token= in chunks: the last chunk answers 201 with the video; its retry too', async () => {
    const { token } = await mintUploadToken(fixture.url, TOKEN);
    const first = randomBytesOf(5 * MiB);
    const last = randomBytesOf(MiB);
    const one = await postToUpload(fixture.url, token, first, { range: 'part 1/2' });
    expect(one.status).toBe(201);
    const videoId = one.body.videoId as string;
    // A streamed chunk is read once: the relay cannot send it again, so it asks.
    fixture.emulator.faults.add({ target: 'part', part: 2, loseAnswer: true });
    const two = await postToUpload(fixture.url, token, last, {
      range: 'part 2/2',
      videoId: videoId,
    });
    expect([two.status, two.body.videoId]).toEqual([201, videoId]);
    expect(asked(videoId)).toBeGreaterThanOrEqual(1);
    // The client did not see that answer either, and sends the chunk again: the same video.
    const again = await postToUpload(fixture.url, token, last, {
      range: 'part 2/2',
      videoId: videoId,
    });
    expect([again.status, again.body.videoId]).toEqual([201, videoId]);
    expect(inspectVideo(fixture.emulator, videoId)).toMatchObject({
      completed: true,
      deleted: false,
      sha256: sha256([first, last]),
    });
    expect(outcomesOf(videoId)).toEqual([expect.objectContaining({ kind: 'completed' })]);
  });

  test('tus: the PATCH answers 204 at the full length; complete, kept, upload.completed once', async () => {
    const data = randomBytesOf(7 * MiB);
    const path = await createUpload(fixture.url, data.length, TOKEN);
    fixture.emulator.faults.add({ target: 'part', part: 2, loseAnswer: true });
    const answer = await patch(fixture.url, path, 0, data, TOKEN);
    expect([answer.status, answer.offset]).toEqual([204, String(data.length)]);
    const videoId = answer.headers['upload-video-id'] as string;
    expect(inspectVideo(fixture.emulator, videoId)).toMatchObject({
      completed: true,
      deleted: false,
      sha256: sha256(data),
    });
    expect(await headOffset(fixture.url, path, TOKEN)).toMatchObject({ offset: data.length });
    expect(deletes()).toBe(0);
    expect(outcomesOf(videoId)).toEqual([expect.objectContaining({ kind: 'completed' })]);
  });
});

describe('a middle part is kept but its answer is lost', () => {
  test('POST /v1/videos: sent again with exactly its bytes; byte-exact', async () => {
    fixture.emulator.faults.add({ target: 'part', part: 1, loseAnswer: true });
    const answer = await uploadMultipart(fixture.url, 12 * MiB, { headers: auth(TOKEN) });
    expect(answer.status).toBe(201);
    const videoId = answer.body.videoId as string;
    const seen = inspectVideo(fixture.emulator, videoId);
    expect(seen).toMatchObject({ completed: true, sha256: answer.sha256 });
    // The emulator refuses a part number sent again with other bytes: part 1 arrived twice, whole.
    expect(seen.parts.find((p) => p.number === 1)).toMatchObject({ received: 2, size: 5 * MiB });
  });

  test('tus, cut while that part is on the wire: api.video is asked, byte-exact, nothing re-sent with other bytes', async () => {
    const { emulator } = fixture;
    const data = randomBytesOf(23 * MiB);
    const path = await createUpload(fixture.url, data.length, TOKEN);
    // Every answer to part 2 is lost, its retries' too: only api.video's status can settle it.
    emulator.faults.add({ target: 'part', part: 2, loseAnswer: true, times: 100 });
    emulator.gate.hold();
    const body = new PassThrough();
    const client = new AbortController();
    const cut = patch(fixture.url, path, 0, body, TOKEN, {}, client.signal).catch(() => undefined);
    body.write(data.subarray(0, 14 * MiB));
    // Parts 1 and 2 go out together: 1 is let through, 2 stays on the wire.
    await emulator.gate.waitForHeld(2);
    emulator.gate.release('part 1/*');
    expect(emulator.gate.held).toEqual(['part 2/*']);
    // The client's connection drops while part 2 is on the wire; part 2 goes on.
    client.abort();
    await cut;
    emulator.gate.open();
    const { offset } = await headOffset(fixture.url, path, TOKEN);
    expect(offset).toBeGreaterThanOrEqual(10 * MiB);
    emulator.faults.clear();
    const rest = await patch(fixture.url, path, offset, data.subarray(offset), TOKEN);
    expect(rest.status).toBe(204);
    const videoId = rest.headers['upload-video-id'] as string;
    const seen = inspectVideo(emulator, videoId);
    expect(seen).toMatchObject({ completed: true, sha256: sha256(data) });
    expect(asked(videoId)).toBeGreaterThanOrEqual(1);
    expect(seen.parts.find((p) => p.number === 2)!.received).toBeGreaterThanOrEqual(2);
  });
});

test('a failure with the last part unsettled asks api.video before deleting the container', async () => {
  // The last part never reaches api.video (the connection drops on its first byte, every try).
  fixture.emulator.faults.add({ target: 'part', part: 1, drop: true, times: 100 });
  const answer = await uploadMultipart(fixture.url, MiB, { headers: auth(TOKEN) });
  expect(answer.status).toBe(502);
  const failed = outcomes.find((o) => o.kind === 'failed')!;
  expect(failed).toMatchObject({ containerDeleted: true });
  const log = fixture.emulator.requestLog.map((r) => `${r.method} ${r.url}`);
  const status = log.indexOf(`GET /videos/${failed.videoId}/status`);
  expect(status).toBeGreaterThan(-1);
  expect(status).toBeLessThan(log.indexOf(`DELETE /videos/${failed.videoId}`));
});

test('a container is kept when api.video cannot say whether its last part landed', async () => {
  fixture.emulator.faults.add({ target: 'part', part: 1, drop: true, times: 100 });
  fixture.emulator.faults.add({ target: 'status', status: 503, times: 100 });
  const answer = await uploadMultipart(fixture.url, MiB, { headers: auth(TOKEN) });
  expect(answer.status).toBe(502);
  const failed = outcomes.find((o) => o.kind === 'failed')!;
  expect(failed).toMatchObject({ containerDeleted: false });
  expect(inspectVideo(fixture.emulator, failed.videoId!).deleted).toBe(false);
  expect(
    fixture.relay.logs().some((l) => l.event === 'container_kept' && l.videoId === failed.videoId),
  ).toBe(true);
});

test('tus: a HEAD after a completion that was never saved asks api.video and answers the full length', async () => {
  const data = randomBytesOf(6 * MiB);
  const path = await createUpload(fixture.url, data.length, TOKEN);
  // Both answers of the last part are lost, and api.video stays unreachable for the PATCH's asks.
  fixture.emulator.faults.add({ target: 'part', part: 2, loseAnswer: true, times: 100 });
  fixture.emulator.faults.add({ target: 'status', status: 503, times: 5 });
  const answer = await patch(fixture.url, path, 0, data, TOKEN);
  expect(answer.status).toBeGreaterThanOrEqual(500);
  expect(Number(answer.offset)).toBeLessThan(data.length);
  fixture.emulator.faults.clear();
  const head = await request(fixture.url).head(path).set(auth(TOKEN)).set(TUS);
  expect([head.status, head.headers['upload-offset']]).toEqual([200, String(data.length)]);
  const videoId = head.headers['upload-video-id'] as string;
  expect(inspectVideo(fixture.emulator, videoId)).toMatchObject({
    completed: true,
    deleted: false,
    sha256: sha256(data),
  });
  expect(outcomesOf(videoId)).toEqual([expect.objectContaining({ kind: 'completed' })]);
});
