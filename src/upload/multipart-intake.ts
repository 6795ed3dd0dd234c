import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import busboy from 'busboy';
import { RelayError } from '../errors';
import type { FieldValues } from './video-fields';

export interface FormLimits {
  fields: number;
  fieldSize: number;
}

export interface MultipartFile {
  stream: Readable;
  filename: string | undefined;
  fields: FieldValues;
  /** Resolves when the whole form is parsed; rejects at the form's first broken rule. */
  complete: Promise<void>;
  /** Stops parsing: the request body is no longer read into the form. */
  stop(): void;
}

/**
 * Reads a multipart form up to its file field. Text fields must come first: the container is
 * created from them as soon as the file's first byte arrives.
 */
export function receiveMultipart(req: IncomingMessage, limits: FormLimits): Promise<MultipartFile> {
  let parser: busboy.Busboy;
  try {
    parser = busboy({ headers: req.headers, limits: { ...limits, parts: limits.fields + 2 } });
  } catch (err) {
    return Promise.reject(new RelayError('malformed_multipart', (err as Error).message));
  }
  const fields: FieldValues = new Map();
  let fileSeen = false;
  let settleComplete!: (err?: RelayError) => void;
  const complete = new Promise<void>((resolve, reject) => {
    settleComplete = (err) => (err ? reject(err) : resolve());
  });
  complete.catch(() => undefined); // observed by whoever awaits it; never an unhandled rejection
  const stop = () => {
    req.unpipe(parser);
    parser.removeAllListeners('file').removeAllListeners('field');
  };

  return new Promise<MultipartFile>((resolve, reject) => {
    const fail = (err: RelayError) => {
      stop();
      if (fileSeen) settleComplete(err);
      else reject(err);
    };
    parser.on('field', (name, value, info) => {
      if (fileSeen)
        return fail(
          new RelayError(
            'field_after_file',
            `The field "${name}" came after the file; send text fields first.`,
          ),
        );
      if (info.valueTruncated)
        return fail(
          new RelayError(
            'field_too_large',
            `The field "${name}" is longer than ${limits.fieldSize} bytes.`,
          ),
        );
      fields.set(name, [...(fields.get(name) ?? []), value]);
    });
    parser.on('file', (name, stream, info) => {
      if (fileSeen) {
        stream.resume();
        return fail(
          new RelayError(
            'too_many_files',
            'The form has more than one file; send one file per request.',
          ),
        );
      }
      if (name !== 'file') {
        stream.resume();
        return fail(
          new RelayError(
            'file_missing',
            `The file must be in a field named "file", not "${name}".`,
          ),
        );
      }
      fileSeen = true;
      resolve({ stream, filename: info.filename, fields, complete, stop });
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
      if (!fileSeen)
        reject(new RelayError('file_missing', 'The form has no file field named "file".'));
      settleComplete();
    });
    req.pipe(parser);
  });
}
