/**
 * Every way an upload can go wrong: the answer (problem+json, its own code, the request id), and
 * what is left at api.video (no completed video; the container deleted when the relay made it).
 */
import request from 'supertest';
import { request as undiciRequest } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import { MiB, randomBytesOf, randomStream } from '../helpers/data';
import { inspectVideo, ownedBy, startTestEmulator } from '../helpers/emulator';
import { RawHttp } from '../helpers/raw-http';
import { eventually } from '../helpers/wait';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { multipartAround, uploadMultipart, uploadRaw } from '../helpers/upload';

let emulator: RunningEmulator;
let relay: TestRelay;
beforeAll(async () => {
  emulator = await startTestEmulator();
  relay = await startTestRelay(emulator, {
    env: { UPLOAD_MAX_FILE_SIZE: '64MiB', UPLOAD_IDLE_TIMEOUT_MS: '400' },
  });
});
afterAll(async () => {
  await relay.close();
  await emulator.close();
});

const videoCount = () => emulator.videos.all().length;
const newestVideo = () => emulator.videos.all().at(-1)!;

describe('the problem+json shape', () => {
  test('415 for a body that is neither multipart nor a video: code, request id, no stack', async () => {
    const res = await request(relay.url)
      .post('/v1/videos')
      .set('Content-Type', 'text/plain')
      .send('hello');
    expect(res.status).toBe(415);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body).toEqual({
      type: expect.stringContaining('#unsupported_media_type'),
      title: 'Unsupported media type',
      status: 415,
      detail: expect.any(String),
      code: 'unsupported_media_type',
      requestId: res.headers['x-request-id'],
    });
    expect(res.text).not.toMatch(/at .*\.(ts|js):\d+/);
  });

  test('an incoming X-Request-Id is honoured and echoed; a hostile one is replaced', async () => {
    const res = await request(relay.url).get('/nowhere').set('X-Request-Id', 'trace-42');
    expect(res.status).toBe(404);
    expect(res.headers['x-request-id']).toBe('trace-42');
    expect(res.body).toMatchObject({ code: 'route_not_found', requestId: 'trace-42' });
    const hostile = await request(relay.url)
      .get('/healthz')
      .set('X-Request-Id', 'a\tb'.repeat(100));
    expect(hostile.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('bad forms', () => {
  test('a form without a file: file_missing, nothing created', async () => {
    const before = videoCount();
    const res = await request(relay.url).post('/v1/videos').field('title', 'no file');
    expect(res.body).toMatchObject({ status: 400, code: 'file_missing' });
    expect(videoCount()).toBe(before);
  });

  test('a file under another field name: file_missing', async () => {
    const res = await request(relay.url)
      .post('/v1/videos')
      .attach('video', Buffer.from('abc'), 'a.mp4');
    expect(res.body).toMatchObject({ status: 400, code: 'file_missing' });
  });

  test('two files: too_many_files, and the container made for the first is deleted', async () => {
    const res = await request(relay.url)
      .post('/v1/videos')
      .attach('file', randomBytesOf(6 * MiB), 'a.mp4')
      .attach('file', Buffer.from('second'), 'b.mp4');
    expect(res.body).toMatchObject({ status: 400, code: 'too_many_files' });
    expect(inspectVideo(emulator, newestVideo().videoId)).toMatchObject({
      deleted: true,
      completed: false,
    });
  });

  test('a field after the file: field_after_file, the container deleted, the last part never sent', async () => {
    emulator.stats.reset();
    const answer = await uploadMultipart(relay.url, 7 * MiB, { after: [['title', 'late']] });
    expect(answer.body).toMatchObject({ status: 400, code: 'field_after_file' });
    const seen = inspectVideo(emulator, newestVideo().videoId);
    expect(seen).toMatchObject({ deleted: true, completed: false });
    expect(emulator.stats.partLog.map((p) => p.contentRange)).toEqual(['part 1/*']);
  });

  test('an invalid field value: invalid_field, nothing created', async () => {
    const before = videoCount();
    for (const [name, value] of [
      ['public', 'maybe'],
      ['metadata', '[1]'],
      ['metadata', '{"a":1}'],
    ]) {
      const res = await request(relay.url)
        .post('/v1/videos')
        .field(name!, value!)
        .attach('file', Buffer.from('x'), 'a.mp4');
      expect(res.body).toMatchObject({ status: 400, code: 'invalid_field' });
    }
    const badId = await request(relay.url)
      .post('/v1/videos')
      .field('videoId', '../x')
      .attach('file', Buffer.from('x'), 'a.mp4');
    expect(badId.body).toMatchObject({ status: 400, code: 'invalid_video_id' });
    expect(videoCount()).toBe(before);
  });

  test('a multipart type without a boundary: malformed_multipart', async () => {
    const res = await request(relay.url)
      .post('/v1/videos')
      .set('Content-Type', 'multipart/form-data')
      .send('x');
    expect(res.body).toMatchObject({ status: 400, code: 'malformed_multipart' });
  });

  test('a truncated form (no closing boundary): malformed_multipart, and the container is deleted', async () => {
    const file = randomBytesOf(7 * MiB);
    const head = '--B\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n';
    const client = await RawHttp.open(relay.url);
    client.head('/v1/videos', {
      'Content-Type': 'multipart/form-data; boundary=B',
      'Content-Length': String(head.length + file.length),
    });
    await client.write(head);
    await client.write(file);
    const answer = await client.answer();
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'malformed_multipart' });
    await eventually(() => inspectVideo(emulator, newestVideo().videoId).deleted);
    expect(inspectVideo(emulator, newestVideo().videoId).completed).toBe(false);
    client.destroy();
  });

  test('a container the client named is never deleted, even when its upload fails', async () => {
    const own = emulator.videos.create(ownedBy('anonymous:127.0.0.1', { title: 'theirs' }));
    const answer = await uploadMultipart(relay.url, 7 * MiB, {
      fields: [['videoId', own.videoId]],
      after: [['x', 'y']],
    });
    expect(answer.body).toMatchObject({ code: 'field_after_file' });
    expect(inspectVideo(emulator, own.videoId).deleted).toBe(false);
  });

  test('a videoId that does not exist: video_not_found before any part is sent', async () => {
    emulator.stats.reset();
    const answer = await uploadRaw(relay.url, 1000, { query: 'videoId=viDoesNotExist' });
    expect(answer.body).toMatchObject({ status: 404, code: 'video_not_found' });
    expect(emulator.stats.partRequests).toBe(0);
  });
});

describe('size limit (64 MiB here)', () => {
  test('a raw body whose Content-Length is too large: 413 before a byte is read, nothing created', async () => {
    const before = videoCount();
    const client = await RawHttp.open(relay.url);
    client.head('/v1/videos', { 'Content-Type': 'video/mp4', 'Content-Length': String(65 * MiB) });
    const answer = await client.answer();
    expect(answer.status).toBe(413);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'file_too_large' });
    expect(videoCount()).toBe(before);
    client.destroy();
  });

  test('a chunked form that crosses the limit: 413, reading stops, the container is deleted', async () => {
    const size = 80 * MiB;
    const form = multipartAround(randomStream(size), size);
    const res = await undiciRequest(`${relay.url}/v1/videos`, {
      method: 'POST',
      headers: { 'content-type': form.contentType }, // no length: chunked, the limit is found on the way
      body: form.body,
    }).catch((err: Error) => err);
    if (!(res instanceof Error)) {
      expect(res.statusCode).toBe(413);
      expect(await res.body.json()).toMatchObject({ code: 'file_too_large' });
    }
    await eventually(() => inspectVideo(emulator, newestVideo().videoId).deleted);
    expect(inspectVideo(emulator, newestVideo().videoId).completed).toBe(false);
    const line = relay
      .logs()
      .find((l) => l.event === 'upload_finished' && l.videoId === newestVideo().videoId);
    expect(line).toMatchObject({ outcome: 'file_too_large' });
    expect(line!.bytes as number).toBeLessThanOrEqual(64 * MiB + 1024 * 1024);
  });
});

describe('the client', () => {
  test('disconnects mid-upload: in-flight parts stop, the container is deleted, upload_aborted is logged', async () => {
    const client = await RawHttp.open(relay.url);
    const head = '--B\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n';
    client.head('/v1/videos', {
      'Content-Type': 'multipart/form-data; boundary=B',
      'Content-Length': String(50 * MiB),
    });
    await client.write(head);
    await client.write(randomBytesOf(12 * MiB));
    await eventually(
      () =>
        emulator.videos.all().length > 0 &&
        inspectVideo(emulator, newestVideo().videoId).parts.length >= 1,
    );
    const { videoId } = newestVideo();
    client.destroy();
    await eventually(() => inspectVideo(emulator, videoId).deleted);
    expect(inspectVideo(emulator, videoId).completed).toBe(false);
    await eventually(() =>
      relay.logs().some((l) => l.event === 'upload_aborted' && l.videoId === videoId),
    );
    const aborted = relay
      .logs()
      .find((l) => l.event === 'upload_aborted' && l.videoId === videoId)!;
    expect(aborted.bytesReceived as number).toBeGreaterThanOrEqual(10 * MiB);
  });

  test('stops sending for longer than UPLOAD_IDLE_TIMEOUT_MS: 408, the container is deleted', async () => {
    const client = await RawHttp.open(relay.url);
    client.head('/v1/videos?title=stalled', {
      'Content-Type': 'video/mp4',
      'Content-Length': String(20 * MiB),
    });
    await client.write(randomBytesOf(6 * MiB));
    const answer = await client.answer();
    expect(answer.status).toBe(408);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'upload_idle_timeout' });
    await eventually(() => inspectVideo(emulator, newestVideo().videoId).deleted);
    client.destroy();
  });
});

describe('UPLOAD_REQUEST_TIMEOUT_MS', () => {
  test('an upload still running after the limit: 408 upload_timeout, and the container is deleted', async () => {
    const limited = await startTestRelay(emulator, {
      env: { UPLOAD_REQUEST_TIMEOUT_MS: '700', UPLOAD_IDLE_TIMEOUT_MS: '0' },
    });
    const client = await RawHttp.open(limited.url);
    client.head('/v1/videos', { 'Content-Type': 'video/mp4', 'Content-Length': String(20 * MiB) });
    await client.write(randomBytesOf(6 * MiB));
    const started = Date.now();
    const answer = await client.answer();
    expect(answer.status).toBe(408);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'upload_timeout' });
    expect(Date.now() - started).toBeLessThan(3000);
    await eventually(() => inspectVideo(emulator, newestVideo().videoId).deleted);
    client.destroy();
    await limited.close();
  });
});

describe('the upstream rejects the relay’s key', () => {
  test('502 upstream_key_rejected, an error line for the operator, and the key nowhere', async () => {
    const wrongKey = 'wrong-key-4d2c8b1a';
    const misconfigured = await startTestRelay(emulator, { apiKey: wrongKey });
    const answer = await uploadRaw(misconfigured.url, 1000);
    await misconfigured.close();
    expect(answer.body).toMatchObject({ status: 502, code: 'upstream_key_rejected' });
    expect(JSON.stringify(answer)).not.toContain(wrongKey);
    const line = misconfigured.logs().find((l) => l.event === 'upstream_key_rejected');
    expect(line).toMatchObject({ level: 50 });
    expect(misconfigured.rawLogs()).not.toContain(wrongKey);
    expect(misconfigured.rawLogs()).not.toContain(Buffer.from(`${wrongKey}:`).toString('base64'));
  });
});

describe('GET /v1/videos/{videoId}', () => {
  test('answers api.video’s video object where a 201’s Location points', async () => {
    const answer = await uploadRaw(relay.url, 100);
    const res = await request(relay.url).get(answer.headers.location as string);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ videoId: answer.body.videoId });
    const missing = await request(relay.url).get('/v1/videos/viNope00000000');
    expect(missing.body).toMatchObject({ status: 404, code: 'video_not_found' });
  });
});
