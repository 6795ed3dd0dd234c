import type { RequestHandler } from 'express';
import type { ApiVideoClient } from '../../apivideo/client';
import { ApiVideoHttpError } from '../../apivideo/errors';
import { isVideoId } from '../../apivideo/video-id';
import { RelayError } from '../../kernel/errors';
import { isOwnedBy } from '../../engine/owner';
import { toRelayError } from '../../engine/upstream-failure';
import { principalOf } from '../../http/client-auth';

/**
 * GET /v1/videos/{videoId}: where a 201's Location points; api.video's video object, only for a
 * video this principal uploaded through the relay. Another's video is "not found", not "forbidden":
 * ids are not confirmed to those who guess them.
 */
export function getVideoRoute(client: ApiVideoClient): RequestHandler {
  return async (req, res) => {
    const videoId = String(req.params.videoId);
    if (!isVideoId(videoId)) {
      throw new RelayError(
        'invalid_video_id',
        'A video id is "vi" followed by 8 to 40 letters or digits.',
      );
    }
    const notFound = () => new RelayError('video_not_found', `There is no video "${videoId}".`);
    try {
      const video = await client.getVideo(videoId, { signal: AbortSignal.timeout(30_000) });
      if (!isOwnedBy(video, principalOf(res).id)) throw notFound();
      res.json(video);
    } catch (err) {
      if (err instanceof ApiVideoHttpError && err.status === 404) throw notFound();
      throw toRelayError(err);
    }
  };
}
