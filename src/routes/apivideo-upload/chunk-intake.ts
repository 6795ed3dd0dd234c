import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { isVideoId } from '../../apivideo/video-id';
import { RelayError } from '../../kernel/errors';
import { readForm, type FormLimits } from '../../http/multipart-intake';

export interface ChunkForm {
  stream: Readable;
  filename: string | undefined;
  /** `videoId` when it came before the file (the browser uploader sends it there). */
  videoId: string | undefined;
  /**
   * Settles once the whole form is parsed, with a `videoId` that came after the file (the Node
   * client's progressive session sends it there), or undefined.
   */
  complete: Promise<{ videoIdAfter: string | undefined }>;
  stop(): void;
}

/**
 * A chunk as api.video's `/upload` takes it: one file field under any name (the Node client names
 * it after the file), and an optional `videoId` field before or after it. Other text fields are
 * ignored, as api.video ignores them, within the relay's form limits.
 */
export async function receiveChunk(req: IncomingMessage, limits: FormLimits): Promise<ChunkForm> {
  let videoId: string | undefined;
  let videoIdAfter: string | undefined;
  const form = await readForm(req, limits, {
    file: () => undefined,
    field: (name, value, afterFile) => {
      if (name !== 'videoId') return undefined;
      if (!isVideoId(value))
        return new RelayError('invalid_video_id', '"videoId" is not an api.video video id.');
      if ((afterFile ? videoIdAfter : videoId) !== undefined)
        return new RelayError('invalid_field', '"videoId" may be given once.');
      if (afterFile) videoIdAfter = value;
      else videoId = value;
      return undefined;
    },
    noFile: () => new RelayError('file_missing', 'The form has no file.'),
  });
  const complete = form.complete.then(() => ({ videoIdAfter }));
  complete.catch(() => undefined); // observed by whoever awaits it; never an unhandled rejection
  return {
    stream: form.stream,
    filename: form.filename,
    videoId,
    complete,
    stop: () => form.stop(),
  };
}
