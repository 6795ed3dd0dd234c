/**
 * The official api.video Node client talks to the emulator. If the emulator misread the protocol,
 * the client of the people who wrote the protocol would fail here.
 */
import ApiVideoClient from '@api.video/nodejs-client';
import { MiB, tempFile, type TempFile } from '../helpers/data';
import { TEST_API_KEY, inspectVideo } from '../helpers/emulator';
import { useEmulator } from '../helpers/fixture';

const fixture = useEmulator();
const emulator = () => fixture.emulator;
let file: TempFile;
beforeAll(async () => (file = await tempFile(13 * MiB + 12345)));
afterAll(() => file?.remove()); // absent when beforeAll failed

function client(chunkSize?: number) {
  return new ApiVideoClient({ apiKey: TEST_API_KEY, baseUri: emulator().url, chunkSize });
}

test('default upload, in one request, assembles the same bytes', async () => {
  const api = client(50 * MiB);
  const video = await api.videos.create({ title: 'whole' });
  await api.videos.upload(video.videoId, file.path);
  const seen = inspectVideo(emulator(), video.videoId);
  expect(seen).toMatchObject({
    mode: 'whole',
    completed: true,
    size: file.size,
    sha256: file.sha256,
  });
});

test('default upload in 5 MiB chunks (part N/M) assembles the same bytes', async () => {
  const api = client(5 * MiB);
  const video = await api.videos.create({ title: 'chunked' });
  await api.videos.upload(video.videoId, file.path);
  const seen = inspectVideo(emulator(), video.videoId);
  expect(seen.mode).toBe('part');
  expect(seen.parts.map((p) => p.number)).toEqual([1, 2, 3]);
  expect(seen).toMatchObject({
    completed: true,
    size: file.size,
    sha256: file.sha256,
    declaredTotal: 3,
  });
});

test('a progressive upload session (part N/*, then N/N) assembles the same bytes', async () => {
  const api = client();
  const video = await api.videos.create({ title: 'progressive' });
  const parts = await splitFile(file, 6 * MiB);
  try {
    const session = api.videos.createUploadProgressiveSession(video.videoId);
    for (const part of parts.slice(0, -1)) await session.uploadPart(part.path);
    const done = await session.uploadLastPart(parts.at(-1)!.path);
    expect(done.videoId).toBe(video.videoId);
    const seen = inspectVideo(emulator(), video.videoId);
    expect(seen).toMatchObject({
      mode: 'part',
      completed: true,
      size: file.size,
      sha256: file.sha256,
    });
  } finally {
    await Promise.all(parts.map((p) => p.remove()));
  }
});

test('the client reports the emulator’s errors: a second upload to a finished container', async () => {
  const api = client();
  const video = await api.videos.create({ title: 'twice' });
  await api.videos.upload(video.videoId, file.path);
  await expect(api.videos.upload(video.videoId, file.path)).rejects.toMatchObject({
    problemDetails: {
      status: 400,
      type: 'https://docs.api.video/reference/video-source-already-uploaded',
    },
  });
});

async function splitFile(source: TempFile, size: number): Promise<TempFile[]> {
  const { readFile, writeFile, mkdtemp, rm } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const bytes = await readFile(source.path);
  const dir = await mkdtemp(join(tmpdir(), 'parts-'));
  const parts: TempFile[] = [];
  for (let offset = 0, n = 1; offset < bytes.length; offset += size, n++) {
    const path = join(dir, `part${n}.bin`);
    const slice = bytes.subarray(offset, offset + size);
    await writeFile(path, slice);
    parts.push({
      path,
      size: slice.length,
      sha256: '',
      remove: () => rm(dir, { recursive: true, force: true }),
    });
  }
  return parts;
}
