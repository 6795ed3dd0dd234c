import { Readable } from 'node:stream';
import { request } from 'undici';
import { randomStream } from './data';
import { Multipart, type Fields } from './multipart';

export interface UploadAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

/** A multipart body around a stream, built as it is read, with its exact length. */
export function multipartAround(
  file: Readable,
  fileSize: number,
  options: { fields?: Fields; after?: Fields; filename?: string; fieldName?: string } = {},
): { body: Readable; contentType: string; length: number } {
  const form = new Multipart();
  const head = Buffer.concat([
    ...(options.fields ?? []).map(([name, value]) => form.field(name, value)),
    form.fileHead(options.fieldName, options.filename),
  ]);
  const tail = Buffer.concat([
    form.fileEnd(),
    ...(options.after ?? []).map(([name, value]) => form.field(name, value)),
    form.end(),
  ]);
  async function* parts() {
    yield head;
    for await (const chunk of file) yield chunk as Buffer;
    yield tail;
  }
  return {
    body: Readable.from(parts(), { objectMode: false }),
    contentType: form.contentType,
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
