import type { Transform } from 'node:stream';
import { Router, type Request, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Video } from '../apivideo/types';
import { formatBytes } from '../config';
import { RelayError, isRelayError } from '../errors';
import { continueIfExpected } from '../http/linger';
import { guardUploadRequest, type GuardDeps } from '../http/upload-request';
import { abortable } from '../upload/abortable';
import {
  ClientGone,
  freshState,
  type UploadEngine,
  type UploadIdentity,
  type UploadObserver,
} from '../upload/engine';
import type { FormLimits } from '../upload/multipart-intake';
import { toRelayError } from '../upload/upstream-failure';
import { byteTransform } from '../upload/stream-buffers';
import { titleFromFilename, type UploadTarget } from '../upload/video-fields';
import { apiVideoProblemHandler } from './apivideo-problem';
import { bindTokenFields, uploadGrant, type UploadTokenGrant } from './bind';
import { RangeProblem, parseChunkRange, planPart, type ChunkRange } from './chunk-range';
import type { UploadLocker } from '../resumable/upload-lock';
import { receiveChunk, type ChunkForm } from './chunk-intake';
import type { TokenUpload } from './store';
import type { UploadTokens } from './tokens';
import { idOf } from '../http/request-id';

export const TOKEN_UPLOAD_PATH = '/upload';

export interface TokenUploadDeps extends GuardDeps {
  tokens: UploadTokens;
  /** One chunk at a time per token: the same lock resumable uploads take (across replicas). */
  locker: UploadLocker;
  engine: UploadEngine;
  observer: UploadObserver;
  /** The admission every upload route shares (UPLOAD_MAX_CONCURRENT, per client, draining). */
  admit: RequestHandler;
  formLimits: FormLimits;
  logger: Logger;
}

/** Room for the form's framing and a `videoId` field when a chunk's Content-Length is judged. */
const FORM_OVERHEAD_ALLOWANCE = 1024 * 1024;
/** api.video's ceiling on one part: a chunk is one part. */
const MAX_CHUNK = 128 * 1024 * 1024;
const ROUTE = 'upload-token' as const;

/**
 * `POST /upload?token=…`: api.video's delegated upload, answered as api.video answers it, so its
 * own uploaders work with their host set to the relay. An adapter on the upload engine: a whole
 * file (no Content-Range) is one `engine.relay()` like any upload; each chunk of a chunked upload
 * is one `engine.sendPart()`, exactly one part at api.video, streamed through. The first chunk
 * creates the video from the token's fields; later chunks can only reach a video this token
 * created (the token remembers them).
 */
export function tokenUploadRoutes(deps: TokenUploadDeps): Router {
  const router = Router();
  router.post(TOKEN_UPLOAD_PATH, tokenFromQuery(deps.tokens), deps.admit, handler(deps));
  router.use(TOKEN_UPLOAD_PATH, apiVideoProblemHandler(deps.logger));
  return router;
}

/** `?token=` authenticates the request as the minting principal; whether it may start is per chunk. */
function tokenFromQuery(tokens: UploadTokens): RequestHandler {
  return async (req, res, next) => {
    try {
      const token = req.query.token;
      if (typeof token !== 'string' || token.length === 0)
        throw new RelayError('upload_token_unknown', 'Send the upload token as ?token=.');
      const { hash, record } = await tokens.check(token, 'continue');
      res.locals.principal = { id: record.principal, kind: record.principalKind };
      res.locals.uploadToken = uploadGrant(tokens, hash, record);
      res.locals.uploadTokenHash = hash;
      req.log?.setBindings?.({ uploadTokenId: record.id });
      next();
    } catch (err) {
      next(err);
    }
  };
}

interface Chunk {
  req: Request;
  deps: TokenUploadDeps;
  grant: UploadTokenGrant;
  hash: string;
  form: ChunkForm;
  range: ChunkRange;
  /** The stricter of UPLOAD_MAX_FILE_SIZE and the token's maxFileSize; 0: none. */
  limit: number;
  signal: AbortSignal;
  log: Logger;
}

function handler(deps: TokenUploadDeps): RequestHandler {
  return async (req, res, next) => {
    const grant = res.locals.uploadToken as UploadTokenGrant;
    const hash = res.locals.uploadTokenHash as string;
    const log = req.log.child({ principal: grant.record.principal, uploadTokenId: grant.id });
    const guard = guardUploadRequest(res, deps);
    let form: ChunkForm | undefined;
    try {
      const range = readRange(req.headers['content-range']);
      const limit = sizeLimit(deps.engine.settings.maxFileSize, grant.record.fields.maxFileSize);
      checkDeclaredLength(req, range, limit);
      continueIfExpected(req, res);
      form = await abortable(receiveChunk(req, deps.formLimits), guard.signal);
      const chunk: Chunk = {
        req,
        deps,
        grant,
        hash,
        form,
        range,
        limit,
        signal: guard.signal,
        log,
      };
      const video =
        range.kind === 'whole' && form.videoId === undefined
          ? await wholeFile(chunk)
          : await oneChunk(chunk);
      // Exactly `application/json`, no charset: the official Node client accepts nothing else.
      res.status(201).setHeader('Content-Type', 'application/json');
      res.send(Buffer.from(JSON.stringify(video)));
    } catch (err) {
      form?.stop();
      if (err instanceof ClientGone) return;
      next(isRelayError(err) ? err : toRelayError(err));
    } finally {
      guard.done();
    }
  };
}

function identityOf(c: Chunk, uploadId: string, startedAt: number): UploadIdentity {
  return {
    uploadId,
    route: ROUTE,
    principal: c.grant.record.principal,
    uploadTokenId: c.grant.id,
    startedAt,
  };
}

/** A file in one request: the engine cuts it into parts, retries them, and cleans up on failure. */
async function wholeFile(c: Chunk): Promise<Video> {
  const { deps, grant, form } = c;
  const identity = identityOf(c, idOf(c.req), Date.now());
  let target: UploadTarget | undefined;
  try {
    target = targetFor(grant, form.filename);
    await grant.consume();
  } catch (err) {
    await refused(c, identity, target, err);
    throw err;
  }
  deps.metrics.uploadsStarted.inc({ route: ROUTE });
  try {
    const video = await deps.engine.relay({
      identity,
      target,
      file: form.stream.pipe(limitTo(c.limit)),
      signal: c.signal,
      logger: c.log,
      bodyComplete: form.complete.then(() => undefined),
      classifyStreamError: (err) =>
        isRelayError(err)
          ? err
          : new RelayError(
              'malformed_multipart',
              `The multipart body is malformed: ${(err as Error).message}.`,
            ),
    });
    await deps.tokens.store.saveUpload(c.hash, {
      videoId: video.videoId,
      uploadId: identity.uploadId,
      startedAt: identity.startedAt,
      target,
      state: { ...freshState(), videoId: video.videoId },
      progress: {},
      completed: true,
    });
    return video;
  } catch (err) {
    // The engine deleted what it created and recorded the failure: the use is given back.
    await deps.tokens.store.refund(c.hash).catch(() => undefined);
    throw err;
  }
}

/**
 * One chunk at a time per token: the upload's state (what is acknowledged, how many bytes) is read
 * and saved under the lock, so parallel chunks can neither pass the size limit together nor
 * overwrite each other's progress. api.video's uploaders send chunks one after the other anyway.
 */
async function oneChunk(c: Chunk): Promise<Video> {
  const lock = await c.deps.locker.acquire(
    `token-upload:${c.hash}`,
    AbortSignal.any([c.signal, AbortSignal.timeout(10_000)]),
    () => undefined,
  );
  try {
    return await oneChunkLocked({ ...c, signal: AbortSignal.any([c.signal, lock.lost]) });
  } finally {
    await lock.release();
  }
}

/** One chunk of a chunked upload: one part at api.video, into the video this token created. */
async function oneChunkLocked(c: Chunk): Promise<Video> {
  const { deps, grant, hash, form, range } = c;
  const store = deps.tokens.store;
  const found = await uploadFor(c);
  const plan = planOrRefuse(range, found?.progress ?? {});
  if (c.limit > 0 && range.kind === 'bytes' && range.size > c.limit) throw tooLarge(c.limit);
  let upload: TokenUpload;
  let startedHere = false;
  if (found) upload = found;
  else {
    const identity = identityOf(c, idOf(c.req), Date.now());
    let target: UploadTarget | undefined;
    try {
      target = targetFor(grant, form.filename);
      await grant.consume();
    } catch (err) {
      await refused(c, identity, target, err);
      throw err;
    }
    startedHere = true;
    deps.metrics.uploadsStarted.inc({ route: ROUTE });
    upload = {
      videoId: '',
      uploadId: identity.uploadId,
      startedAt: identity.startedAt,
      target,
      state: freshState(),
      progress: {},
      completed: false,
    };
  }
  const identity = identityOf(c, upload.uploadId, upload.startedAt);
  const { target } = upload;
  const state = upload.state;
  let received = 0;
  // What broke the body, if it broke: the upstream call then fails too, but this is the reason.
  // `ended`: the client's chunk ended, so a part shorter than planned is the client's doing.
  const broken: { error?: unknown; ended?: boolean } = {};
  const file = countBytes(form.stream, broken, (n) => {
    received += n;
    if (c.limit > 0 && state.ackedBytes + received > c.limit) throw tooLarge(c.limit);
    if (plan.length !== undefined && received > plan.length)
      throw new RelayError(
        'upload_chunk_invalid',
        `The chunk is longer than its Content-Range says (${plan.length} bytes).`,
      );
    if (received > MAX_CHUNK)
      throw new RelayError('file_too_large', `A chunk is at most ${formatBytes(MAX_CHUNK)}.`);
  });
  try {
    const sent = deps.engine.sendPart({
      identity,
      target,
      state,
      part: plan.part,
      isLast: plan.last,
      file,
      length: plan.length,
      signal: c.signal,
      logger: c.log,
    });
    // The container exists once sendPart has opened it: remember it now, so a retry finds it.
    const { video } = await sent;
    if (plan.length !== undefined && received !== plan.length)
      throw new RelayError(
        'upload_chunk_invalid',
        `The chunk has ${received} bytes, not the ${plan.length} its Content-Range says.`,
      );
    const { videoIdAfter } = await form.complete;
    await store.saveUpload(hash, {
      ...upload,
      videoId: state.videoId!,
      state,
      progress: plan.progress,
      completed: upload.completed || plan.last,
    });
    if (videoIdAfter !== undefined && videoIdAfter !== state.videoId) throw notThisToken();
    c.log.info(
      {
        event: 'upload_chunk',
        videoId: state.videoId,
        part: plan.part,
        last: plan.last,
        bytes: received,
      },
      'chunk relayed',
    );
    return video;
  } catch (failure) {
    const err = c.signal.aborted
      ? (c.signal.reason as Error)
      : broken.error instanceof RelayError
        ? broken.error
        : broken.error !== undefined
          ? new RelayError('malformed_multipart', 'The multipart body ended before the chunk did.')
          : broken.ended && plan.length !== undefined && received < plan.length
            ? new RelayError(
                'upload_chunk_invalid',
                `The chunk has ${received} bytes, not the ${plan.length} its Content-Range says.`,
              )
            : failure;
    const code = err instanceof ClientGone || isRelayError(err) ? err.code : 'internal_error';
    if (startedHere && state.ackedBytes === 0) {
      // The upload never got a part in: it fails whole (the engine deletes the container it made
      // and records the outcome), and its use is given back so a retry starts afresh.
      await deps.engine.fail({
        identity,
        target,
        state,
        code,
        kind: 'failed',
        bytesReceived: received,
        logger: c.log,
      });
      if (state.videoId) await store.forgetUpload(hash, state.videoId).catch(() => undefined);
      await store.refund(hash).catch(() => undefined);
    } else {
      // A failed chunk is not a failed upload: the client retries it, into the same video.
      deps.observer.interrupted(ROUTE, code);
      if (state.videoId && startedHere)
        await store
          .saveUpload(hash, { ...upload, videoId: state.videoId, state })
          .catch(() => undefined);
    }
    throw err;
  }
}

/** An upload refused before the engine had it is still an upload with one outcome. */
async function refused(
  c: Chunk,
  identity: UploadIdentity,
  target: UploadTarget | undefined,
  err: unknown,
): Promise<void> {
  await c.deps.engine.fail({
    identity,
    target,
    state: freshState(),
    code: isRelayError(err) ? err.code : 'internal_error',
    kind: 'failed',
    bytesReceived: 0,
    logger: c.log,
  });
}

/**
 * Which upload a chunk belongs to; undefined when it starts a new one. A chunk can only go into
 * a video this token created (or the one it was minted for): the `videoId` a client names is
 * checked against the token's own uploads, never trusted.
 */
async function uploadFor(c: Chunk): Promise<TokenUpload | undefined> {
  const store = c.deps.tokens.store;
  const bound = c.grant.record.fields.videoId;
  const named = c.form.videoId;
  if (named !== undefined) {
    const own = await store.upload(c.hash, named);
    if (own) return own;
    if (named === bound) return undefined;
    throw notThisToken();
  }
  const first =
    c.range.kind === 'whole' ||
    (c.range.kind === 'part' && c.range.part === 1) ||
    (c.range.kind === 'bytes' && c.range.from === 0);
  const latest = await store.upload(c.hash);
  if (!first) {
    // The Node client sends no videoId on later chunks: they continue the token's latest upload.
    if (!latest || latest.completed)
      throw new RelayError(
        'upload_chunk_invalid',
        'No upload of this token is in progress: send its first chunk first.',
      );
    return latest;
  }
  // A single-use token's first chunk again (a retry after a lost answer) goes where the first went.
  if (c.grant.record.maxUses === 1 && latest && !latest.completed) return latest;
  return undefined;
}

function targetFor(grant: UploadTokenGrant, filename: string | undefined): UploadTarget {
  return bindTokenFields(
    { kind: 'create', payload: { title: titleFromFilename(filename) } },
    grant.record,
  );
}

function readRange(header: string | undefined): ChunkRange {
  try {
    return parseChunkRange(header);
  } catch (err) {
    if (err instanceof RangeProblem) throw new RelayError('upload_chunk_invalid', err.message);
    throw err;
  }
}

function planOrRefuse(range: ChunkRange, progress: TokenUpload['progress']) {
  try {
    return planPart(range, progress);
  } catch (err) {
    if (err instanceof RangeProblem) throw new RelayError('upload_chunk_invalid', err.message);
    throw err;
  }
}

function checkDeclaredLength(req: Request, range: ChunkRange, limit: number): void {
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  if (!type.startsWith('multipart/form-data'))
    throw new RelayError(
      'unsupported_media_type',
      'Send the chunk as multipart/form-data with one file field.',
    );
  const declared =
    req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length']);
  if (declared === undefined) return;
  if (limit > 0 && declared > limit + FORM_OVERHEAD_ALLOWANCE) throw tooLarge(limit);
  if (range.kind !== 'whole' && declared > MAX_CHUNK + FORM_OVERHEAD_ALLOWANCE)
    throw new RelayError('file_too_large', `A chunk is at most ${formatBytes(MAX_CHUNK)}.`);
}

function sizeLimit(relay: number, token: number | undefined): number {
  if (!token) return relay;
  return relay > 0 ? Math.min(relay, token) : token;
}

/** The token's maxFileSize on a whole file (the engine enforces UPLOAD_MAX_FILE_SIZE itself). */
function limitTo(limit: number): Transform {
  let seen = 0;
  return byteTransform((chunk: Buffer, _enc, done) => {
    seen += chunk.length;
    if (limit > 0 && seen > limit) return done(tooLarge(limit));
    done(null, chunk);
  });
}

async function* countBytes(
  stream: AsyncIterable<Buffer>,
  broken: { error?: unknown; ended?: boolean },
  seen: (bytes: number) => void,
): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of stream) {
      seen(chunk.length);
      yield chunk;
    }
    broken.ended = true;
  } catch (err) {
    broken.error = err;
    throw err;
  }
}

function tooLarge(limit: number): RelayError {
  return new RelayError('file_too_large', `The file is larger than ${formatBytes(limit)}.`);
}

function notThisToken(): RelayError {
  return new RelayError(
    'upload_token_video_mismatch',
    'This upload token did not start an upload into that video.',
  );
}
