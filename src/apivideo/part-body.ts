import { randomBytes } from 'node:crypto';

export interface MultipartBody {
  contentType: string;
  contentLength: number;
  /** Fresh each call, so a retry re-sends the same bytes; the chunks are never joined. */
  body(): Iterable<Buffer>;
}

/**
 * A multipart/form-data body with one file field whose content is the given chunks, written as
 * they are: preamble, chunks, epilogue. Content-Length is known up front.
 */
export function multipartFileBody(chunks: readonly Buffer[], filename = 'source'): MultipartBody {
  const boundary = `----apivideo-relay-${randomBytes(12).toString('hex')}`;
  const preamble = Buffer.from(
    `--${boundary}\r\n` +
      `Content-Disposition: form-data; name="file"; filename="${filename.replace(/["\r\n]/g, '_')}"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  const epilogue = Buffer.from(`\r\n--${boundary}--\r\n`);
  const size = chunks.reduce((n, c) => n + c.length, 0);
  return {
    contentType: `multipart/form-data; boundary=${boundary}`,
    contentLength: preamble.length + size + epilogue.length,
    body: () => [preamble, ...chunks, epilogue],
  };
}

/**
 * The same form around a stream read once, as it arrives: for a part whose bytes the relay does
 * not hold (a client's chunk passed straight through). `length`, when known, gives Content-Length;
 * without it the body goes chunked.
 */
export function multipartStreamBody(
  file: AsyncIterable<Buffer>,
  length: number | undefined,
  filename = 'source',
): { contentType: string; contentLength?: number; body: AsyncIterable<Buffer> } {
  const boundary = `----apivideo-relay-${randomBytes(12).toString('hex')}`;
  const preamble = Buffer.from(
    `--${boundary}\r\n` +
      `Content-Disposition: form-data; name="file"; filename="${filename.replace(/["\r\n]/g, '_')}"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  const epilogue = Buffer.from(`\r\n--${boundary}--\r\n`);
  async function* body() {
    yield preamble;
    yield* file;
    yield epilogue;
  }
  return {
    contentType: `multipart/form-data; boundary=${boundary}`,
    ...(length === undefined ? {} : { contentLength: preamble.length + length + epilogue.length }),
    body: body(),
  };
}
