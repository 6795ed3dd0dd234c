/**
 * An upload's id is the relay's own: a client that sends `X-Request-Id` equal to someone else's
 * upload id (they are in Location headers and logs) neither overwrites that upload nor reaches it.
 */
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { inspectVideo } from '../helpers/emulator';
import { useRelay } from '../helpers/fixture';
import { createUpload, headOffset, patch } from '../helpers/resumable';
import { mintUploadToken, postToUpload } from '../helpers/upload-tokens';

const TOKEN = 'upload-ids-token-0123456789';
const fixture = useRelay({ env: { RELAY_API_TOKENS: TOKEN } });

test('a first chunk sent with a tus upload’s id as X-Request-Id does not overwrite that upload', async () => {
  const data = randomBytesOf(7 * MiB);
  const path = await createUpload(fixture.url, data.length, TOKEN);
  expect((await patch(fixture.url, path, 0, data.subarray(0, 2 * MiB), TOKEN)).status).toBe(204);
  const tusId = path.split('/').pop()!;
  const { token } = await mintUploadToken(fixture.url, TOKEN);
  const first = await postToUpload(fixture.url, token, randomBytesOf(5 * MiB), {
    range: 'part 1/2',
    requestId: tusId,
  });
  expect(first.status).toBe(201);
  // The tus upload is as it was, and finishes byte-exact.
  expect(await headOffset(fixture.url, path, TOKEN)).toMatchObject({
    status: 200,
    offset: 2 * MiB,
  });
  const rest = await patch(fixture.url, path, 2 * MiB, data.subarray(2 * MiB), TOKEN);
  expect(rest.status).toBe(204);
  expect(inspectVideo(fixture.emulator, rest.headers['upload-video-id'] as string)).toMatchObject({
    completed: true,
    sha256: sha256(data),
  });
});

test('two tokens’ uploads started with the same X-Request-Id stay two uploads, each byte-exact', async () => {
  const [one, two] = [
    await mintUploadToken(fixture.url, TOKEN),
    await mintUploadToken(fixture.url, TOKEN),
  ];
  const files = [
    [randomBytesOf(5 * MiB), randomBytesOf(MiB)],
    [randomBytesOf(5 * MiB), randomBytesOf(2 * MiB)],
  ];
  const a = await postToUpload(fixture.url, one.token, files[0]![0]!, {
    range: 'part 1/2',
    requestId: 'chosen-by-the-client',
  });
  const b = await postToUpload(fixture.url, two.token, files[1]![0]!, {
    range: 'part 1/2',
    requestId: 'chosen-by-the-client',
  });
  expect([a.status, b.status]).toEqual([201, 201]);
  expect(a.body.videoId).not.toBe(b.body.videoId);
  const a2 = await postToUpload(fixture.url, one.token, files[0]![1]!, {
    range: 'part 2/2',
    requestId: 'x1',
    videoId: a.body.videoId as string,
  });
  const b2 = await postToUpload(fixture.url, two.token, files[1]![1]!, {
    range: 'part 2/2',
    requestId: 'x2',
    videoId: b.body.videoId as string,
  });
  expect([a2.status, b2.status]).toEqual([201, 201]);
  for (const [answer, parts] of [
    [a2, files[0]!],
    [b2, files[1]!],
  ] as const)
    expect(inspectVideo(fixture.emulator, answer.body.videoId as string)).toMatchObject({
      completed: true,
      sha256: sha256([...parts]),
    });
});
