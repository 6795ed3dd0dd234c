import { randomBytes } from 'node:crypto';

export type Fields = Array<[string, string]>;

/**
 * The one multipart/form-data builder of the tests: whole bodies, bodies streamed around a file,
 * and the broken ones (a file part never closed, a field after the file) that tests send raw.
 */
export class Multipart {
  readonly contentType: string;

  constructor(readonly boundary = `----test${randomBytes(8).toString('hex')}`) {
    this.contentType = `multipart/form-data; boundary=${boundary}`;
  }

  /** A text field, whole. */
  field(name: string, value: string): Buffer {
    return Buffer.from(
      `--${this.boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`,
    );
  }

  /** The headers of a file part: its bytes follow, then `fileEnd()`. */
  fileHead(name = 'file', filename = 'clip.mp4', type: string | null = 'video/mp4'): Buffer {
    return Buffer.from(
      `--${this.boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${filename}"\r\n` +
        (type ? `Content-Type: ${type}\r\n` : '') +
        '\r\n',
    );
  }

  fileEnd(): Buffer {
    return Buffer.from('\r\n');
  }

  /** The closing boundary. */
  end(): Buffer {
    return Buffer.from(`--${this.boundary}--\r\n`);
  }

  /** A whole body: fields and files in the order given. */
  body(parts: Array<[string, string] | { name: string; filename?: string; data: Buffer }>): Buffer {
    return Buffer.concat([
      ...parts.flatMap((p) =>
        Array.isArray(p)
          ? [this.field(...p)]
          : [this.fileHead(p.name, p.filename ?? `${p.name}.bin`, null), p.data, this.fileEnd()],
      ),
      this.end(),
    ]);
  }
}
