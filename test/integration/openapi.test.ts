/**
 * The OpenAPI document cannot drift from the code: it is a valid OpenAPI 3.1 document (checked by
 * swagger-parser), and real answers of a running relay validate against it (by Ajv, 2020-12).
 */
import SwaggerParser from '@apidevtools/swagger-parser';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import request from 'supertest';
import { ERROR_TABLE } from '../../src/kernel/errors';
import openapi from '../../src/http/openapi.json';
import { MiB } from '../helpers/data';
import { useRelay } from '../helpers/fixture';
import { RawHttp } from '../helpers/raw-http';

type Doc = {
  paths: Record<
    string,
    Record<
      string,
      {
        responses: Record<
          string,
          { content?: Record<string, unknown>; headers?: Record<string, unknown> }
        >;
      }
    >
  >;
};
const doc = openapi as unknown as Doc;
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(openapi, 'openapi.json');
const pointer = (...parts: string[]) =>
  parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

const fixture = useRelay({ env: { UPLOAD_MAX_FILE_SIZE: '10MiB', LOG_LEVEL: 'warn' } });
const lockedRelay = fixture.alsoRelay({
  env: {
    RELAY_API_TOKENS: 'openapi-token-0123456789',
    METRICS_TOKEN: 'metrics-0123456789abc',
    LOG_LEVEL: 'warn',
  },
  ready: false,
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  text?: string;
}

/** Checks one real answer against the document: status documented, media type, body schema, headers. */
function conforms(path: string, method: string, answer: Answer): void {
  const operation = doc.paths[path]?.[method];
  expect(operation).toBeDefined();
  const documented = operation!.responses[String(answer.status)];
  if (!documented)
    throw new Error(`${method.toUpperCase()} ${path}: status ${answer.status} is not documented`);
  const mediaType = String(answer.headers['content-type']).split(';')[0]!;
  expect(Object.keys(documented.content ?? {})).toContain(mediaType);
  const validate = ajv.getSchema(
    `openapi.json#/${pointer('paths', path, method, 'responses', String(answer.status), 'content', mediaType, 'schema')}`,
  )!;
  const body = mediaType.startsWith('text/') ? answer.text : answer.body;
  if (!validate(body))
    throw new Error(
      `${method.toUpperCase()} ${path} ${answer.status}: ${ajv.errorsText(validate.errors)}`,
    );
  for (const header of Object.keys(documented.headers ?? {}))
    expect(answer.headers[header.toLowerCase()]).toBeDefined();
}

test('the document is valid OpenAPI 3.1', async () => {
  await expect(SwaggerParser.validate(structuredClone(openapi) as never)).resolves.toBeDefined();
  expect((openapi as { openapi: string }).openapi).toBe('3.1.0');
});

test('the problem codes in the document are exactly the relay’s codes', () => {
  const schema = (
    openapi as {
      components: { schemas: { Problem: { properties: { code: { enum: string[] } } } } };
    }
  ).components.schemas.Problem;
  expect(schema.properties.code.enum).toEqual(Object.keys(ERROR_TABLE));
});

test('GET /openapi.json serves the document', async () => {
  const res = await request(fixture.url).get('/openapi.json');
  expect(res.body).toEqual(openapi);
  conforms('/openapi.json', 'get', res);
});

test('uploads: 201 multipart and raw, and each kind of problem', async () => {
  const api = request(fixture.url);
  const created = await api
    .post('/v1/videos')
    .field('title', 'doc')
    .attach('file', Buffer.alloc(1000, 1), 'a.mp4');
  conforms('/v1/videos', 'post', created);
  conforms(
    '/v1/videos',
    'post',
    await api
      .post('/v1/videos?title=raw')
      .set('Content-Type', 'video/mp4')
      .send(Buffer.alloc(10, 2)),
  );
  conforms(
    '/v1/videos',
    'post',
    await api.post('/v1/videos').set('Content-Type', 'text/plain').send('x'),
  ); // 415
  conforms('/v1/videos', 'post', await api.post('/v1/videos').field('title', 'no file')); // 400
  conforms(
    '/v1/videos',
    'post',
    await api
      .post('/v1/videos?videoId=viMissing00000000')
      .set('Content-Type', 'video/mp4')
      .send(Buffer.alloc(10)),
  ); // 404
  conforms(
    '/v1/videos',
    'post',
    await request(lockedRelay().url).post('/v1/videos').attach('file', Buffer.alloc(1), 'a.mp4'),
  ); // 401
  const big = await RawHttp.open(fixture.url);
  big.head('/v1/videos', {
    'Content-Type': 'video/mp4',
    'Content-Length': String(11 * MiB),
  });
  const tooLarge = await big.answer();
  big.destroy();
  conforms('/v1/videos', 'post', {
    status: tooLarge.status,
    headers: tooLarge.headers,
    body: JSON.parse(tooLarge.body),
  }); // 413
  const videoId = (created.body as { videoId: string }).videoId;
  conforms('/v1/videos/{videoId}', 'get', await api.get(`/v1/videos/${videoId}`));
  conforms('/v1/videos/{videoId}', 'get', await api.get('/v1/videos/viMissing00000000'));
  conforms('/v1/videos/{videoId}', 'get', await api.get('/v1/videos/%2e%2e')); // 400
});

test('operations: health, readiness (both ways), metrics (open and locked)', async () => {
  conforms('/healthz', 'get', await request(fixture.url).get('/healthz'));
  conforms('/readyz', 'get', await request(fixture.url).get('/readyz'));
  conforms('/readyz', 'get', await request(lockedRelay().url).get('/readyz')); // 503
  conforms('/metrics', 'get', await request(fixture.url).get('/metrics'));
  conforms('/metrics', 'get', await request(lockedRelay().url).get('/metrics')); // 401
});

test('resumable uploads: GET /v1/uploads/{id}, both ways', async () => {
  const created = await request(fixture.url)
    .post('/v1/uploads')
    .set('Tus-Resumable', '1.0.0')
    .set('Upload-Length', '3');
  const path = created.headers.location as string;
  await request(fixture.url)
    .patch(path)
    .set('Tus-Resumable', '1.0.0')
    .set('Upload-Offset', '0')
    .set('Content-Type', 'application/offset+octet-stream')
    .send(Buffer.from('abc'));
  conforms('/v1/uploads/{id}', 'get', await request(fixture.url).get(path));
  conforms('/v1/uploads/{id}', 'get', await request(fixture.url).get('/v1/uploads/nope'));
});

test('upload tokens: minting, reading, revoking, and each problem', async () => {
  const api = request(lockedRelay().url);
  const auth = { Authorization: 'Bearer openapi-token-0123456789' };
  const minted = await api
    .post('/v1/upload-tokens')
    .set(auth)
    .send({ title: 't', tags: ['a'] });
  conforms('/v1/upload-tokens', 'post', minted);
  conforms(
    '/v1/upload-tokens',
    'post',
    await api.post('/v1/upload-tokens').set(auth).send({ ttl: 0 }),
  );
  conforms('/v1/upload-tokens', 'post', await api.post('/v1/upload-tokens').send({}));
  const path = '/v1/upload-tokens/{token}';
  conforms(path, 'get', await api.get(`/v1/upload-tokens/${minted.body.token}`).set(auth));
  conforms(path, 'get', await api.get('/v1/upload-tokens/nope').set(auth));
  conforms(path, 'delete', await api.delete('/v1/upload-tokens/nope').set(auth));
  const revoked = await api.delete(`/v1/upload-tokens/${minted.body.id}`).set(auth);
  expect(revoked.status).toBe(204);
  expect(doc.paths[path]!.delete!.responses['204']).toBeDefined();
  const refused = await api
    .post('/v1/videos')
    .set('Authorization', `Bearer ${minted.body.token}`)
    .attach('file', Buffer.alloc(1), 'a.mp4');
  expect(refused.body.code).toBe('upload_token_revoked');
  conforms('/v1/videos', 'post', refused);
});

test('POST /upload?token=: the video, and problems in api.video’s shape', async () => {
  const api = request(lockedRelay().url);
  const auth = { Authorization: 'Bearer openapi-token-0123456789' };
  const minted = await api.post('/v1/upload-tokens').set(auth).send({ maxUses: 2 });
  const token = minted.body.token as string;
  conforms(
    '/upload',
    'post',
    await api.post(`/upload?token=${token}`).attach('clip.mp4', Buffer.alloc(100, 3), 'clip.mp4'),
  );
  conforms(
    '/upload',
    'post',
    await api
      .post(`/upload?token=${token}`)
      .set('Content-Range', 'part 3/2')
      .attach('file', Buffer.alloc(1), 'a.mp4'),
  );
  conforms(
    '/upload',
    'post',
    await api.post('/upload?token=to_nope').attach('file', Buffer.alloc(1), 'a.mp4'),
  );
  conforms(
    '/upload',
    'post',
    await api
      .post(`/upload?token=${token}`)
      .field('videoId', 'viNotMine')
      .attach('file', Buffer.alloc(1), 'a.mp4'),
  );
  conforms(
    '/upload',
    'post',
    await api.post(`/upload?token=${token}`).set('Content-Type', 'text/plain').send('x'),
  );
});
