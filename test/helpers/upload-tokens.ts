import { Readable } from 'node:stream';
import { request as undici } from 'undici';
import { multipartAround } from './upload';
import request from 'supertest';

export interface MintedToken {
  token: string;
  id: string;
  expiresAt: string;
  [field: string]: unknown;
}

/** POST /v1/upload-tokens as the app's backend (`bearer`); expects the 201. */
export async function mintUploadToken(
  relayUrl: string,
  bearer: string,
  body: object = {},
): Promise<MintedToken> {
  const res = await request(relayUrl)
    .post('/v1/upload-tokens')
    .set('Authorization', `Bearer ${bearer}`)
    .send(body);
  expect(res.status).toBe(201);
  return res.body as MintedToken;
}

/**
 * One request to api.video's `POST /upload?token=` as its uploaders send it: a form with the file
 * (the whole file, or one chunk with its `Content-Range`) and, on later chunks, the `videoId`.
 */
export async function postToUpload(
  relayUrl: string,
  token: string,
  data: Buffer,
  options: { range?: string; videoId?: string; requestId?: string } = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: Record<string, unknown> }> {
  const form = multipartAround(Readable.from([data]), data.length, {
    fields: options.videoId ? [['videoId', options.videoId]] : [],
    filename: 'clip.mp4',
  });
  const res = await undici(`${relayUrl}/upload?token=${encodeURIComponent(token)}`, {
    method: 'POST',
    headers: {
      'content-type': form.contentType,
      'content-length': String(form.length),
      ...(options.range ? { 'content-range': options.range } : {}),
      ...(options.requestId ? { 'x-request-id': options.requestId } : {}),
    },
    body: form.body,
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
  };
}
