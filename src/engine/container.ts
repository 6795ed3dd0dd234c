import type { ApiVideoClient, CallOptions } from '../apivideo/client';
import { ApiVideoHttpError } from '../apivideo/errors';
import type { Video } from '../apivideo/types';
import { RelayError } from '../kernel/errors';
import { hasOwnerMark, isOwnedBy, withOwner } from './owner';
import type { UploadTarget } from './video-fields';

/**
 * The container an upload goes into, at its first byte: the one the client named (checked, so a
 * wrong id fails before any part is sent), or a new one the relay creates (and may delete).
 */
export async function openContainer(
  client: ApiVideoClient,
  target: UploadTarget,
  principal: string,
  options: CallOptions = {},
): Promise<{ videoId: string; created: boolean }> {
  if (target.kind === 'create') {
    const payload = withOwner(target.payload, principal);
    return { videoId: (await client.createVideo(payload, options)).videoId, created: true };
  }
  const notFound = () =>
    new RelayError('video_not_found', `There is no video "${target.videoId}" of yours.`);
  const video = await client.getVideo(target.videoId, options).catch((err: unknown) => {
    if (err instanceof ApiVideoHttpError && err.status === 404) throw notFound();
    throw err;
  });
  if (!mayUploadInto(video, principal)) throw notFound();
  return { videoId: target.videoId, created: false };
}

/**
 * Video ids are public (they are in every player URL), so naming one is no proof of a right to
 * upload into it. A container this principal made through the relay is theirs; one made by the
 * app's backend directly (no owner mark) is open only to static-token principals, which are the
 * backend's own credentials. Clients get such containers through upload tokens that bind them.
 */
function mayUploadInto(video: Video, principal: string): boolean {
  if (isOwnedBy(video, principal)) return true;
  return !hasOwnerMark(video) && principal.startsWith('token:');
}
