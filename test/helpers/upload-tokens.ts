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
