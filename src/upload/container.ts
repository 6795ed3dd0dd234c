import type { ApiVideoClient, CallOptions } from '../apivideo/client';
import { ApiVideoHttpError } from '../apivideo/errors';
import { RelayError } from '../errors';
import type { UploadTarget } from './video-fields';

/**
 * The container an upload goes into, at its first byte: the one the client named (checked, so a
 * wrong id fails before any part is sent), or a new one the relay creates (and may delete).
 */
export async function openContainer(
  client: ApiVideoClient,
  target: UploadTarget,
  options: CallOptions = {},
): Promise<{ videoId: string; created: boolean }> {
  if (target.kind === 'create') {
    return { videoId: (await client.createVideo(target.payload, options)).videoId, created: true };
  }
  await client.getVideo(target.videoId, options).catch((err: unknown) => {
    if (err instanceof ApiVideoHttpError && err.status === 404) {
      throw new RelayError('video_not_found', `There is no video "${target.videoId}".`);
    }
    throw err;
  });
  return { videoId: target.videoId, created: false };
}
