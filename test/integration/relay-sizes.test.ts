/**
 * The size table: for each part size, multipart and raw, files on and around every boundary.
 * The emulator's SHA-256 must equal the file's, parts must run 1..N, every part but the last must
 * be at least 5 MiB, and the last must be labelled N/N (never an empty part, also on exact multiples).
 * Part sizes adapt to the client (5 MiB first, growing toward UPLOAD_PART_SIZE), so the table
 * checks the rules every size must keep rather than one fixed size.
 */
import { MiB } from '../helpers/data';
import { ownerMark } from '../../src/engine/owner';
import { inspectVideo, ownedBy } from '../helpers/emulator';
import { useRelay } from '../helpers/fixture';
import { uploadMultipart, uploadRaw } from '../helpers/upload';
import { partRuleBroken } from '../../src/engine/part-size';
import { MIN_PART_SIZE } from '../../src/kernel/sizes';

/** Every boundary of the smallest part size api.video takes: below, on and above 1, 2 and 3 parts. */
function sizesAtMinimum(part: number): number[] {
  return [1, part - 1, part, part + 1, 2 * part - 1, 2 * part, 2 * part + 1, 3 * part];
}

/**
 * The default part size (16 MiB), where other sizes would prove nothing the minimum does not:
 * below, on and above one part, and an exact multiple (part N/N, never an empty one).
 */
function sizesAtDefault(part: number): number[] {
  return [5 * MiB + 1, part - 1, part, part + 1, 2 * part];
}

const table = [
  ...(['multipart', 'raw'] as const).flatMap((kind) =>
    sizesAtMinimum(5 * MiB).map((size) => ({ partSize: 5 * MiB, kind, size })),
  ),
  ...(['multipart', 'raw'] as const).flatMap((kind) =>
    sizesAtDefault(16 * MiB).map((size) => ({ partSize: 16 * MiB, kind, size })),
  ),
];

const fixture = useRelay({ env: { UPLOAD_PART_SIZE: String(5 * MiB), LOG_LEVEL: 'info' } });
const atDefault = fixture.alsoRelay({
  env: { UPLOAD_PART_SIZE: String(16 * MiB), LOG_LEVEL: 'info' },
});
const relayFor = (partSize: number) => (partSize === 5 * MiB ? fixture.relay : atDefault());
const emulator = () => fixture.emulator;

test.each(table)(
  '$kind, part size $partSize, file of $size bytes',
  async ({ partSize, kind, size }) => {
    const relay = relayFor(partSize);
    const upload = kind === 'multipart' ? uploadMultipart : uploadRaw;
    const answer = await upload(relay.url, size);
    expect(answer.status).toBe(201);
    const videoId = answer.body.videoId as string;
    expect(answer.headers.location).toBe(`/v1/videos/${videoId}`);
    const seen = inspectVideo(emulator(), videoId);
    expect(seen).toMatchObject({ completed: true, size, sha256: answer.sha256 });
    const sizes = seen.parts.map((p) => p.size);
    const expectedParts = sizes.length;
    expect(seen.parts.map((p) => p.number)).toEqual(
      Array.from({ length: expectedParts }, (_, i) => i + 1),
    );
    expect(partRuleBroken(sizes, partSize)).toBeUndefined();
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(size);
    // Every upload starts at api.video's minimum; a file that fits in one 5 MiB part is one part.
    if (expectedParts > 1) expect(sizes[0]).toBe(MIN_PART_SIZE);
    else expect(size).toBeLessThanOrEqual(MIN_PART_SIZE);
    for (const part of seen.parts.slice(0, -1)) expect(part.label).toBe(`part ${part.number}/*`);
    expect(seen.parts.at(-1)!.label).toBe(`part ${expectedParts}/${expectedParts}`);
    expect(seen.parts.every((p) => p.received === 1)).toBe(true);
  },
);

test('an empty file is refused with empty_file and leaves no container behind', async () => {
  const relay = fixture.relay;
  const before = emulator().videos.all().length;
  for (const upload of [uploadMultipart, uploadRaw]) {
    const answer = await upload(relay.url, 0);
    expect(answer.status).toBe(400);
    expect(answer.body).toMatchObject({ code: 'empty_file', status: 400 });
  }
  expect(emulator().videos.all().length).toBe(before);
});

test('metadata fields reach the container: title, description, public, tags, metadata', async () => {
  const relay = fixture.relay;
  const multipart = await uploadMultipart(relay.url, 1000, {
    fields: [
      ['title', 'Holiday'],
      ['description', 'At the sea'],
      ['public', 'false'],
      ['tags', 'sea'],
      ['tags', 'summer'],
      ['metadata', '{"camera":"x100"}'],
    ],
  });
  expect(multipart.status).toBe(201);
  expect(inspectVideo(emulator(), multipart.body.videoId as string).input).toEqual({
    title: 'Holiday',
    description: 'At the sea',
    public: false,
    tags: ['sea', 'summer'],
    // The owner mark rides along: GET /v1/videos/{id} serves the video to its uploader only.
    metadata: [
      { key: 'camera', value: 'x100' },
      { key: 'relay-owner', value: ownerMark('anonymous:127.0.0.1') },
    ],
  });
  const raw = await uploadRaw(relay.url, 1000, { query: 'filename=beach.mov&tags=a&tags=b' });
  expect(raw.status).toBe(201);
  expect(inspectVideo(emulator(), raw.body.videoId as string).input).toEqual({
    title: 'beach',
    tags: ['a', 'b'],
    metadata: [{ key: 'relay-owner', value: ownerMark('anonymous:127.0.0.1') }],
  });
  const untitled = await uploadMultipart(relay.url, 1000, { filename: 'my.clip.mp4' });
  expect(inspectVideo(emulator(), untitled.body.videoId as string).input.title).toBe('my.clip');
});

test('an upload into a container the client names uses it, and never creates one', async () => {
  const relay = fixture.relay;
  const existing = emulator().videos.create(ownedBy('anonymous:127.0.0.1', { title: 'mine' }));
  const before = emulator().videos.all().length;
  const multipart = await uploadMultipart(relay.url, 6 * MiB, {
    fields: [['videoId', existing.videoId]],
  });
  expect(multipart.status).toBe(201);
  expect(multipart.body.videoId).toBe(existing.videoId);
  expect(inspectVideo(emulator(), existing.videoId)).toMatchObject({
    completed: true,
    sha256: multipart.sha256,
  });
  const other = emulator().videos.create(ownedBy('anonymous:127.0.0.1', { title: 'raw target' }));
  const raw = await uploadRaw(relay.url, 2000, { query: `videoId=${other.videoId}` });
  expect(raw.status).toBe(201);
  expect(inspectVideo(emulator(), other.videoId)).toMatchObject({
    completed: true,
    sha256: raw.sha256,
  });
  expect(emulator().videos.all().length).toBe(before + 1); // only the one this test made itself
});
