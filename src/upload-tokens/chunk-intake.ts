import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import busboy from 'busboy';
import { RelayError } from '../errors';
import type { FormLimits } from '../upload/multipart-intake';

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

const VIDEO_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * A chunk as api.video's `/upload` takes it: one file field under any name (the Node client names
 * it after the file), and an optional `videoId` field before or after it. Other text fields are
 * ignored, as api.video ignores them, within the relay's form limits.
 */
export function receiveChunk(req: IncomingMessage, limits: FormLimits): Promise<ChunkForm> {
  let parser: busboy.Busboy;
  try {
    parser = busboy({ headers: req.headers, limits: { ...limits, parts: limits.fields + 2 } });
  } catch (err) {
    return Promise.reject(new RelayError('malformed_multipart', (err as Error).message));
  }
  let fileSeen = false;
  let videoId: string | undefined;
  let videoIdAfter: string | undefined;
  let settle!: (err?: RelayError) => void;
  const complete = new Promise<{ videoIdAfter: string | undefined }>((resolve, reject) => {
    settle = (err) => (err ? reject(err) : resolve({ videoIdAfter }));
  });
  complete.catch(() => undefined);
  const stop = () => {
    req.unpipe(parser);
    parser.removeAllListeners('file').removeAllListeners('field');
  };
  return new Promise<ChunkForm>((resolve, reject) => {
    const fail = (err: RelayError) => {
      stop();
      if (fileSeen) settle(err);
      else reject(err);
    };
    parser.on('field', (name, value, info) => {
      if (info.valueTruncated)
        return fail(new RelayError('field_too_large', `The field "${name}" is too long.`));
      if (name !== 'videoId') return;
      if (!VIDEO_ID.test(value))
        return fail(new RelayError('invalid_field', '"videoId" is not a video id.'));
      if ((fileSeen ? videoIdAfter : videoId) !== undefined)
        return fail(new RelayError('invalid_field', '"videoId" may be given once.'));
      if (fileSeen) videoIdAfter = value;
      else videoId = value;
    });
    parser.on('file', (_name, stream, info) => {
      if (fileSeen) {
        stream.resume();
        return fail(new RelayError('too_many_files', 'Send one file (chunk) per request.'));
      }
      fileSeen = true;
      resolve({ stream, filename: info.filename, videoId, complete, stop });
    });
    parser.on('fieldsLimit', () =>
      fail(new RelayError('too_many_fields', `The form has more than ${limits.fields} fields.`)),
    );
    parser.on('error', (err: Error) =>
      fail(
        new RelayError('malformed_multipart', `The multipart body is malformed: ${err.message}.`),
      ),
    );
    parser.on('close', () => {
      if (!fileSeen) reject(new RelayError('file_missing', 'The form has no file.'));
      settle();
    });
    req.pipe(parser);
  });
}
