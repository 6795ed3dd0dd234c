import { randomBytes } from 'node:crypto';
import type { Transform } from 'node:stream';
import { Router, type Request, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Video } from '../../apivideo/types';
import { RelayError, isRelayError, ClientGone } from '../../kernel/errors';
import { continueIfExpected } from '../../http/linger';
import { idOf } from '../../http/request-id';
import { guardUploadRequest, type GuardDeps } from '../../http/upload-request';
import type { UploadLock } from '../../stores/upload-lock';
import { expiredError, type UploadSessions } from '../../sessions/upload-sessions';
import { abortable } from '../../engine/abortable';
import { freshState, type UploadIdentity, type UploadObserver } from '../../engine/contract';
import type { UploadEngine } from '../../engine/engine';
import { acknowledgedBytes, acknowledgedParts } from '../../engine/ledger';
import type { FormLimits } from '../../http/multipart-intake';
import { byteTransform } from '../../http/stream-buffers';
import { toRelayError } from '../../engine/upstream-failure';
import { titleFromFilename, type UploadTarget } from '../../engine/video-fields';
import { apiVideoProblemHandler } from './apivideo-problem';
import { bindTokenFields, uploadGrant, type UploadTokenGrant } from '../../upload-tokens/bind';
import {
  RangeProblem,
  parseChunkRange,
  planPart,
  type ChunkRange,
  type PartPlan,
} from './chunk-range';
import { receiveChunk, type ChunkForm } from './chunk-intake';
import type { TokenUploadRef } from '../../stores/upload-token-store';
import type { UploadTokens } from '../../upload-tokens/tokens';
import { MAX_PART_SIZE } from '../../kernel/sizes';
import { FORM_OVERHEAD_ALLOWANCE } from '../../kernel/sizes';
import { smallerLimit } from '../../kernel/sizes';
import { SESSION_VERSION, type UploadSession, type ChunkProgress } from '../../sessions/session';
import { contentLength } from '../../http/body';
import { fileTooLarge } from '../../kernel/errors';

export const TOKEN_UPLOAD_PATH = '/upload';

export interface TokenUploadDeps extends GuardDeps {
  tokens: UploadTokens;
  /** Chunked uploads are upload sessions; their lock is the one tus uploads take (across replicas). */
  sessions: UploadSessions;
  engine: UploadEngine;
  observer: UploadObserver;
  /** The admission every upload route shares (UPLOAD_MAX_CONCURRENT, per client, draining). */
  admit: RequestHandler;
  formLimits: FormLimits;
  logger: Logger;
}

const ROUTE = 'upload-token' as const;

/**
 * `POST /upload?token=…`: api.video's delegated upload, answered as api.video answers it, so its
 * own uploaders work with their host set to the relay. An adapter on the upload engine: a whole
 * file (no Content-Range) is one `engine.relay()` like any upload; each chunk of a chunked upload
 * is one `engine.sendChunk()`, exactly one part at api.video, streamed through, within an upload
 * session like a tus upload's. The first chunk creates the video from the token's fields; later
 * chunks can only reach a video this token created (the token remembers them).
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
  halt: AbortSignal;
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
      const limit = smallerLimit(deps.engine.settings.maxFileSize, grant.record.fields.maxFileSize);
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
        halt: guard.halt,
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

function identityOf(c: Chunk): UploadIdentity {
  return {
    uploadId: idOf(c.req),
    route: ROUTE,
    principal: c.grant.record.principal,
    uploadTokenId: c.grant.id,
    startedAt: Date.now(),
  };
}

/**
 * A file in one request: the engine cuts it into parts, retries them, and cleans up on failure;
 * its ending (however it fails) gives the token's use back.
 */
async function wholeFile(c: Chunk): Promise<Video> {
  const { deps, grant, form } = c;
  let identity = identityOf(c);
  deps.engine.begin(identity);
  let target: UploadTarget | undefined;
  try {
    target = targetFor(grant, form.filename);
    identity = { ...identity, tokenUse: await grant.consume() };
  } catch (err) {
    await refused(c, identity, err);
    throw err;
  }
  return deps.engine.relay({
    identity,
    target,
    file: form.stream.pipe(limitTo(c.limit)),
    signal: c.signal,
    halt: c.halt,
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
}

/**
 * One chunk at a time per token: which upload it belongs to is decided, and the upload's session
 * read and saved, under the token's lock, so parallel chunks can neither pass the size limit
 * together nor start two uploads where one was meant. api.video's uploaders send chunks one after
 * the other anyway.
 */
async function oneChunk(c: Chunk): Promise<Video> {
  const lock = await c.deps.sessions.locker.acquire(
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

/**
 * One chunk of a chunked upload: one part at api.video, into the video this token created. The
 * upload is an upload session like a tus one: its ledger saved before the part goes out, settled
 * with api.video when an answer was lost, swept when abandoned.
 */
async function oneChunkLocked(c: Chunk): Promise<Video> {
  const { deps, range } = c;
  const { sessions } = deps;
  let session = await sessionFor(c);
  const plan = planOrRefuse(range, session?.progress ?? {});
  const startedHere = session === undefined;
  session ??= await startUpload(c);
  const lock = await sessions.locker.acquire(
    session.id,
    AbortSignal.any([c.signal, AbortSignal.timeout(10_000)]),
    () => undefined,
  );
  try {
    const settled = await sessions.settle(session, c.log, lock);
    if (settled.kind === 'completed') {
      // Read as api.video reads a chunk, so the connection stays usable, then answered.
      c.form.stream.resume();
      await abortable(c.form.complete, c.signal);
      return answerCompleted(session, plan.part, plan.last);
    }
    return await sendChunk(c, session, plan, startedHere, lock);
  } finally {
    await lock.release();
  }
}

/** A chunk of an upload that is complete: its last chunk again (its answer was lost) gets the video. */
function answerCompleted(session: UploadSession, part: number, last: boolean): Video {
  if (last && part === session.state.ledger.ackedParts && session.video) return session.video;
  throw new RelayError(
    'upload_chunk_invalid',
    'This upload is complete: there is no chunk left to send.',
  );
}

/**
 * The first chunk of an upload: the token's use is counted and the upload begins. Its ending (a
 * first chunk that fails, the sweep) gives the use back.
 */
async function startUpload(c: Chunk): Promise<UploadSession> {
  const { deps, grant } = c;
  // An id of the relay's own, never the request's (a client may choose its X-Request-Id).
  const identity = { ...identityOf(c), uploadId: randomBytes(16).toString('base64url') };
  const target = targetFor(grant, c.form.filename);
  const tokenUse = await grant.consume();
  const session: UploadSession = {
    v: SESSION_VERSION,
    id: identity.uploadId,
    kind: 'chunked',
    owner: identity.principal,
    length: undefined,
    rawMetadata: undefined,
    target,
    state: freshState(),
    tailBytes: 0,
    completed: false,
    video: undefined,
    createdAt: identity.startedAt,
    expiresAt: deps.sessions.nextExpiry(),
    uploadTokenId: grant.id,
    tokenUse,
    ...(grant.record.fields.maxFileSize ? { maxFileSize: grant.record.fields.maxFileSize } : {}),
  };
  try {
    if (!(await deps.sessions.store.create(session)))
      throw new Error('an upload id was minted twice');
    await deps.tokens.store.saveUpload(c.hash, { uploadId: session.id });
  } catch (err) {
    // Not begun: the use goes straight back.
    await grant.refund();
    throw err;
  }
  deps.engine.begin(identity);
  return session;
}

async function sendChunk(
  c: Chunk,
  session: UploadSession,
  plan: PartPlan,
  startedHere: boolean,
  lock: UploadLock,
): Promise<Video> {
  const { deps, form } = c;
  const { sessions } = deps;
  const { state } = session;
  let received = 0;
  // What broke the body, if it broke: the upstream call then fails too, but this is the reason.
  const broken: { error?: unknown } = {};
  const file = countBytes(form.stream, broken, {
    seen: (n) => {
      received += n;
      if (c.limit > 0 && acknowledgedBytes(state.ledger) + received > c.limit)
        throw fileTooLarge(c.limit);
      if (plan.length !== undefined && received > plan.length)
        throw new RelayError(
          'upload_chunk_invalid',
          `The chunk is longer than its Content-Range says (${plan.length} bytes).`,
        );
      if (received > MAX_PART_SIZE) throw fileTooLarge(MAX_PART_SIZE, 'chunk');
    },
    // Before api.video sees the end of a chunk shorter than its Content-Range says.
    ended: () => {
      if (plan.length !== undefined && received !== plan.length)
        throw new RelayError(
          'upload_chunk_invalid',
          `The chunk has ${received} bytes, not the ${plan.length} its Content-Range says.`,
        );
    },
  });
  session.progress = plan.progress;
  try {
    const { video } = await deps.engine.sendChunk({
      identity: sessions.identityOf(session),
      target: session.target,
      state,
      logger: c.log,
      checkpoint: sessions.checkpoint(session, lock),
      part: plan.part,
      isLast: plan.last,
      file,
      length: plan.length,
      signal: c.signal,
    });
    await rememberVideo(c, session);
    const { videoIdAfter } = await form.complete;
    if (videoIdAfter !== undefined && videoIdAfter !== state.videoId) throw notThisToken();
    c.log.info(
      {
        event: 'upload_chunk',
        uploadId: session.id,
        videoId: state.videoId,
        part: plan.part,
        last: plan.last,
        bytes: received,
      },
      'chunk relayed',
    );
    return video;
  } catch (failure) {
    await rememberVideo(c, session).catch(() => undefined);
    const err = c.signal.aborted
      ? (c.signal.reason as Error)
      : broken.error instanceof RelayError
        ? broken.error
        : broken.error !== undefined
          ? new RelayError('malformed_multipart', 'The multipart body ended before the chunk did.')
          : failure;
    const code = err instanceof ClientGone || isRelayError(err) ? err.code : 'internal_error';
    if (startedHere && acknowledgedParts(state.ledger) === 0 && !session.completed) {
      // The upload never got a part in: it ends here (its container deleted unless api.video
      // holds a source of it), and its ending gives the use back so that a retry starts afresh.
      const ended = await sessions
        .end(session, { kind: 'failed', code }, c.log, lock)
        .catch(() => undefined);
      if (ended?.kind === 'completed') return ended.video;
    } else {
      // A failed chunk is not a failed upload: the client retries it, into the same video.
      deps.observer.interrupted(ROUTE, code);
    }
    throw err;
  }
}

/** Later chunks name the video: it must lead back to this upload. */
async function rememberVideo(c: Chunk, session: UploadSession): Promise<void> {
  const videoId = session.state.videoId;
  if (videoId === undefined) return;
  await c.deps.tokens.store.saveUpload(c.hash, { uploadId: session.id, videoId });
}

/** An upload refused before the engine had it is still an upload with one outcome. */
async function refused(c: Chunk, identity: UploadIdentity, err: unknown): Promise<void> {
  await c.deps.engine.end({
    identity,
    target: undefined,
    state: freshState(),
    code: isRelayError(err) ? err.code : 'internal_error',
    kind: 'failed',
    bytesReceived: 0,
    logger: c.log,
    ifUnsure: 'keep',
  });
}

/**
 * The session of the upload a chunk belongs to; undefined when it starts a new one. An upload
 * past its expiry is ended first (and the chunk refused, or it starts a new upload).
 */
async function sessionFor(c: Chunk): Promise<UploadSession | undefined> {
  const ref = await uploadFor(c);
  if (!ref) return undefined;
  const { sessions } = c.deps;
  const found = await sessions.store.get(ref.uploadId);
  // Only an upload this token started, whatever its reference says.
  const session =
    found?.kind === 'chunked' && found.uploadTokenId === c.grant.id ? found : undefined;
  if (session && sessions.isExpired(session)) {
    const lock = await sessions.locker.tryAcquire(session.id);
    if (lock) {
      try {
        const ended = await sessions.end(
          session,
          { kind: 'expired', code: 'upload_expired' },
          c.log,
          lock,
        );
        if (ended.kind === 'completed') return session;
      } finally {
        await lock.release();
      }
    }
    if (isFirst(c.range)) return undefined;
    throw expiredError();
  }
  if (session) return session;
  if (isFirst(c.range)) return undefined;
  throw noUploadInProgress();
}

/**
 * Which upload a chunk belongs to; undefined when it starts a new one. A chunk can only go into
 * a video this token created (or the one it was minted for): the `videoId` a client names is
 * checked against the token's own uploads, never trusted.
 */
async function uploadFor(c: Chunk): Promise<TokenUploadRef | undefined> {
  const store = c.deps.tokens.store;
  const bound = c.grant.record.fields.videoId;
  const named = c.form.videoId;
  if (named !== undefined) {
    const own = await store.upload(c.hash, named);
    if (own) return own;
    if (named === bound) return undefined;
    throw notThisToken();
  }
  const latest = await store.upload(c.hash);
  // The Node client sends no videoId on later chunks: they continue the token's latest upload.
  if (!isFirst(c.range)) {
    if (!latest) throw noUploadInProgress();
    return latest;
  }
  // A single-use token's first chunk again (a retry after a lost answer) goes where the first went.
  if (c.grant.record.maxUses === 1 && latest) return latest;
  return undefined;
}

function isFirst(range: ChunkRange): boolean {
  return (
    range.kind === 'whole' ||
    (range.kind === 'part' && range.part === 1) ||
    (range.kind === 'bytes' && range.from === 0)
  );
}

function noUploadInProgress(): RelayError {
  return new RelayError(
    'upload_chunk_invalid',
    'No upload of this token is in progress: send its first chunk first.',
  );
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

function planOrRefuse(range: ChunkRange, progress: ChunkProgress): PartPlan {
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
  // The file's size as the range declares it: refused now, before a byte of the body is read.
  if (limit > 0 && range.kind === 'bytes' && range.size > limit) throw fileTooLarge(limit);
  const declared = contentLength(req);
  if (declared === undefined) return;
  if (limit > 0 && declared > limit + FORM_OVERHEAD_ALLOWANCE) throw fileTooLarge(limit);
  if (range.kind !== 'whole' && declared > MAX_PART_SIZE + FORM_OVERHEAD_ALLOWANCE)
    throw fileTooLarge(MAX_PART_SIZE, 'chunk');
}

/** The token's maxFileSize on a whole file (the engine enforces UPLOAD_MAX_FILE_SIZE itself). */
function limitTo(limit: number): Transform {
  let seen = 0;
  return byteTransform((chunk: Buffer, _enc, done) => {
    seen += chunk.length;
    if (limit > 0 && seen > limit) return done(fileTooLarge(limit));
    done(null, chunk);
  });
}

async function* countBytes(
  stream: AsyncIterable<Buffer>,
  broken: { error?: unknown },
  check: { seen: (bytes: number) => void; ended: () => void },
): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of stream) {
      check.seen(chunk.length);
      yield chunk;
    }
    check.ended();
  } catch (err) {
    broken.error = err;
    throw err;
  }
}

function notThisToken(): RelayError {
  return new RelayError(
    'upload_token_video_mismatch',
    'This upload token did not start an upload into that video.',
  );
}
