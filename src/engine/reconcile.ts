/**
 * Reconciliation: what the relay does when it did not see an outcome. The rules (a contributor's
 * checklist; docs/architecture.md tells the same story with the routes around it):
 *
 * 1. An outcome not seen is unknown, never a failure: a reset or a timeout after the bytes left,
 *    a 5xx, a request superseded or aborted while a part was on the wire, a checkpoint that could
 *    not be saved, an instance that died. The ledger marks such a part `unknown` (or leaves it
 *    `sending`, which a later lock holder reads the same way).
 * 2. api.video is asked (`GET /videos/{id}/status`) before the relay fails an upload, deletes a
 *    container, reports an offset or answers a client while a part it may hold is unsettled:
 *    `ingest.status` `uploaded` means the source is complete; `ingest.receivedParts.parts` lists
 *    the part numbers it holds.
 * 3. A `400 video-source-already-uploaded` is not a failure either: the source is complete, so the
 *    relay asks for the video and completes the upload.
 * 4. A completion found this way is an ordinary completion (the 201 or the final 204, the
 *    `upload_finished` line, the metrics, `upload.completed`), saved before it is reported.
 * 5. A container whose source may be complete is never deleted: if api.video cannot be asked,
 *    the container stays (and the sweep asks again later).
 * 6. Re-sending a part is always safe because a number is only ever sent with its bytes
 *    (src/engine/ledger.ts), so parts api.video does not list are simply sent again.
 */
import type { ApiVideoClient, CallOptions } from '../apivideo/client';
import { ApiVideoHttpError } from '../apivideo/errors';
import type { Video } from '../apivideo/types';

export type Holding =
  /** The source is complete: no part may be sent again, the container is never deleted. */
  | { kind: 'uploaded'; video: Video }
  /** Still open: these part numbers are in. */
  | { kind: 'uploading'; received: number[] };

/** Asks api.video what it holds of a video's source. Throws when it cannot be asked. */
export async function askApiVideo(
  client: ApiVideoClient,
  videoId: string,
  options: CallOptions = {},
): Promise<Holding> {
  const status = await client.getVideoStatus(videoId, options);
  if (status.ingest?.status === 'uploaded')
    return { kind: 'uploaded', video: await client.getVideo(videoId, options) };
  const parts = status.ingest?.receivedParts?.parts;
  return {
    kind: 'uploading',
    received: Array.isArray(parts) ? parts.filter((n) => Number.isSafeInteger(n)) : [],
  };
}

/** api.video's answer to a part sent after the source was complete: the first send landed. */
export function isAlreadyUploaded(err: unknown): boolean {
  return (
    err instanceof ApiVideoHttpError &&
    err.status === 400 &&
    (err.problemType ?? '').endsWith('video-source-already-uploaded')
  );
}
