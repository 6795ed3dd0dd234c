import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { randomStream } from './data';

export interface UploadAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

type Fields = Array<[string, string]>;

/** A multipart body around a stream, built as it is read, with its exact length. */
export function multipartAround(
  file: Readable,
  fileSize: number,
  options: { fields?: Fields; after?: Fields; filename?: string; fieldName?: string } = {},
): { body: Readable; contentType: string; length: number } {
  const boundary = `----test${randomBytes(8).toString('hex')}`;
  const field = ([name, value]: [string, string]) =>
    `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  const head = Buffer.from(
    (options.fields ?? []).map(field).join('') +
      `--${boundary}\r\nContent-Disposition: form-data; name="${options.fieldName ?? 'file'}"; filename="${options.filename ?? 'clip.mp4'}"\r\n` +
      'Content-Type: video/mp4\r\n\r\n',
  );
  const tail = Buffer.from(
    '\r\n' + (options.after ?? []).map(field).join('') + `--${boundary}--\r\n`,
  );
  async function* parts() {
    yield head;
    for await (const chunk of file) yield chunk as Buffer;
    yield tail;
  }
  return {
    body: Readable.from(parts(), { objectMode: false }),
    contentType: `multipart/form-data; boundary=${boundary}`,
    length: head.length + fileSize + tail.length,
  };
}

async function send(
  url: string,
  headers: Record<string, string>,
  body: Readable,
): Promise<UploadAnswer> {
  const res = await request(url, { method: 'POST', headers, body });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
  };
}

/** Uploads `size` random bytes as a multipart form; returns the answer and the bytes' SHA-256. */
export async function uploadMultipart(
  relayUrl: string,
  size: number,
  options: {
    fields?: Fields;
    after?: Fields;
    filename?: string;
    headers?: Record<string, string>;
  } = {},
): Promise<UploadAnswer & { sha256: string }> {
  const file = randomStream(size);
  const form = multipartAround(file, size, options);
  const answer = await send(
    `${relayUrl}/v1/videos`,
    { 'content-type': form.contentType, 'content-length': String(form.length), ...options.headers },
    form.body,
  );
  return { ...answer, sha256: file.sha256() };
}

/** Uploads `size` random bytes as a raw body, metadata in the query string. */
export async function uploadRaw(
  relayUrl: string,
  size: number,
  options: { query?: string; contentType?: string; headers?: Record<string, string> } = {},
): Promise<UploadAnswer & { sha256: string }> {
  const file = randomStream(size);
  const answer = await send(
    `${relayUrl}/v1/videos${options.query ? `?${options.query}` : ''}`,
    {
      'content-type': options.contentType ?? 'video/mp4',
      'content-length': String(size),
      ...options.headers,
    },
    file,
  );
  return { ...answer, sha256: file.sha256() };
}
