import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import busboy from 'busboy';
import { RelayError } from '../kernel/errors';
import { STREAM_HIGH_WATER_MARK } from './stream-buffers';

/** A form's text fields, by name (the engine's video fields read them). */
type FieldValues = Map<string, string[]>;

export interface FormLimits {
  fields: number;
  fieldSize: number;
}

/** What a route accepts of a form; the parsing, limits and one-file rule are shared. */
export interface FormRules {
  /** A file field by this name: undefined to take it, or why the form is refused. */
  file(name: string): RelayError | undefined;
  /** A text field, before or after the file: undefined to go on, or why the form is refused. */
  field(name: string, value: string, afterFile: boolean): RelayError | undefined;
  /** The form ended without a file. */
  noFile(): RelayError;
}

export interface FormFile {
  stream: Readable;
  filename: string | undefined;
  /** Resolves when the whole form is parsed; rejects at the form's first broken rule. */
  complete: Promise<void>;
  /** Stops parsing: the request body is no longer read into the form. */
  stop(): void;
}

/**
 * Reads a multipart form up to its one file, streaming the file as it arrives. Resolves at the
 * file (or rejects before it); what breaks the form after the file rejects `complete`.
 */
export function readForm(
  req: IncomingMessage,
  limits: FormLimits,
  rules: FormRules,
): Promise<FormFile> {
  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: req.headers,
      highWaterMark: STREAM_HIGH_WATER_MARK,
      fileHwm: STREAM_HIGH_WATER_MARK,
      limits: { ...limits, parts: limits.fields + 2 },
    });
  } catch (err) {
    return Promise.reject(new RelayError('malformed_multipart', (err as Error).message));
  }
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

  return new Promise<FormFile>((resolve, reject) => {
    const fail = (err: RelayError) => {
      stop();
      if (fileSeen) settleComplete(err);
      else reject(err);
    };
    parser.on('field', (name, value, info) => {
      if (info.valueTruncated)
        return fail(
          new RelayError(
            'field_too_large',
            `The field "${name}" is longer than ${limits.fieldSize} bytes.`,
          ),
        );
      const refused = rules.field(name, value, fileSeen);
      if (refused) fail(refused);
    });
    parser.on('file', (name, stream, info) => {
      const refused = fileSeen
        ? new RelayError(
            'too_many_files',
            'The form has more than one file; send one file per request.',
          )
        : rules.file(name);
      if (refused) {
        stream.resume();
        return fail(refused);
      }
      fileSeen = true;
      resolve({ stream, filename: info.filename, complete, stop });
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
      if (!fileSeen) reject(rules.noFile());
      settleComplete();
    });
    req.pipe(parser);
  });
}

export interface MultipartFile extends FormFile {
  fields: FieldValues;
}

/**
 * `POST /v1/videos`' form: text fields first (the container is created from them as soon as the
 * file's first byte arrives), then one file field named `file`.
 */
export async function receiveMultipart(
  req: IncomingMessage,
  limits: FormLimits,
): Promise<MultipartFile> {
  const fields: FieldValues = new Map();
  const form = await readForm(req, limits, {
    file: (name) =>
      name === 'file'
        ? undefined
        : new RelayError(
            'file_missing',
            `The file must be in a field named "file", not "${name}".`,
          ),
    field: (name, value, afterFile) => {
      if (afterFile)
        return new RelayError(
          'field_after_file',
          `The field "${name}" came after the file; send text fields first.`,
        );
      fields.set(name, [...(fields.get(name) ?? []), value]);
      return undefined;
    },
    noFile: () => new RelayError('file_missing', 'The form has no file field named "file".'),
  });
  return { ...form, fields };
}
