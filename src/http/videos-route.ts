import type { RequestHandler } from 'express';
import type { ApiVideoClient } from '../apivideo/client';
import { ApiVideoHttpError } from '../apivideo/errors';
import { RelayError } from '../errors';
import { toRelayError } from '../upload/upstream-failure';

/** GET /v1/videos/{videoId}: where a 201's Location points; api.video's video object. */
export function getVideoRoute(client: ApiVideoClient): RequestHandler {
  return async (req, res) => {
    const videoId = String(req.params.videoId);
    try {
      res.json(await client.getVideo(videoId, { signal: AbortSignal.timeout(30_000) }));
    } catch (err) {
      if (err instanceof ApiVideoHttpError && err.status === 404) {
        throw new RelayError('video_not_found', `There is no video "${videoId}".`);
      }
      throw toRelayError(err);
    }
  };
}
