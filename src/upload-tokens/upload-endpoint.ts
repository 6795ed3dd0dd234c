import { Router, type Request, type RequestHandler, type Response } from 'express';
import type { Logger } from 'pino';
import type { ApiVideoClient } from '../apivideo/client';
import type { Video } from '../apivideo/types';
import { formatBytes } from '../config';
import { RelayError, isRelayError } from '../errors';
import { continueIfExpected } from '../http/linger';
import { uploadSlots } from '../http/upload-slots';
import type { Lifecycle } from '../lifecycle';
import type { RelayMetrics } from '../metrics';
import { abortable } from '../upload/abortable';
import { openContainer } from '../upload/container';
import type { FormLimits } from '../upload/multipart-intake';
import {
  ClientGone,
  relayUpload,
  type RelaySettings,
  type UploadObserver,
  type UploadProgress,
} from '../upload/relay-upload';
import { toRelayError } from '../upload/upstream-failure';
import { titleFromFilename, type UploadTarget } from '../upload/video-fields';
import { apiVideoProblemHandler } from './apivideo-problem';
import { bindTokenFields, uploadGrant, type UploadTokenGrant } from './bind';
import { RangeProblem, parseChunkRange, planPart, type ChunkRange } from './chunk-range';
import { receiveChunk, type ChunkForm } from './chunk-intake';
import type { TokenUpload } from './store';
import type { UploadTokens } from './tokens';

export const TOKEN_UPLOAD_PATH = '/upload';

export interface TokenUploadDeps {
  tokens: UploadTokens;
  client: ApiVideoClient;
  metrics: RelayMetrics;
  lifecycle: Lifecycle;
  settings: RelaySettings & { requestTimeoutMs: number };
  formLimits: FormLimits;
  limits: { maxConcurrentUploads: number; maxConcurrentPerClient: number };
  logger: Logger;
}

/** Room for the form's framing and a `videoId` field when a chunk's Content-Length is judged. */
const FORM_OVERHEAD_ALLOWANCE = 1024 * 1024;
/** api.video's ceiling on one part: a chunk is one part. */
const MAX_CHUNK = 128 * 1024 * 1024;

/**
 * `POST /upload?token=…`: api.video's delegated upload, answered as api.video answers it, so its
 * own uploaders work with their host set to the relay. A whole file (no Content-Range) goes
 * through the upload engine like any upload; each chunk of a chunked upload becomes one part at
 * api.video, streamed through (nothing held but what is in flight). The first chunk creates the
 * video from the token's fields; later chunks can only reach a video this token created.
 */
export function tokenUploadRoutes(deps: TokenUploadDeps): Router {
  const router = Router();
  router.post(
    TOKEN_UPLOAD_PATH,
    tokenFromQuery(deps.tokens),
    uploadSlots(deps.limits, deps.lifecycle),
    tokenUploadHandler(deps),
  );
  router.use(TOKEN_UPLOAD_PATH, apiVideoProblemHandler(deps.logger));
  return router;
}

/** `?token=` authenticates the request as the minting principal; using it is decided per chunk. */
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

function tokenUploadHandler(deps: TokenUploadDeps): RequestHandler {
  return async (req, res, next) => {
    const grant = res.locals.uploadToken as UploadTokenGrant;
    const hash = res.locals.uploadTokenHash as string;
    const principal = grant.record.principal;
    const log = req.log.child({ principal, uploadTokenId: grant.id });
    const stop = new AbortController();
    res.once('close', () => res.writableFinished || stop.abort(new ClientGone()));
    const deadline = uploadDeadline(deps.settings.requestTimeoutMs, stop);
    const untrack = deps.lifecycle.track(stop);
    deps.metrics.uploadsInProgress.inc();
    let form: ChunkForm | undefined;
    try {
      const range = readRange(req.headers['content-range']);
      const limit = sizeLimit(deps.settings.maxFileSize, grant.record.fields.maxFileSize);
      checkDeclaredLength(req, range, limit);
      continueIfExpected(req, res);
      form = await abortable(receiveChunk(req, deps.formLimits), stop.signal);
      const chunk = { req, res, deps, grant, hash, form, range, limit, signal: stop.signal, log };
      const video =
        range.kind === 'whole' && form.videoId === undefined
          ? await wholeFile(chunk)
          : await oneChunk(chunk);
      // Exactly `application/json`, no charset: the official Node client accepts nothing else.
      res.status(201).setHeader('Content-Type', 'application/json');
      res.send(Buffer.from(JSON.stringify(video)));
    } catch (err) {
      form?.stop();
      if (err instanceof ClientGone) {
        log.warn({ event: 'upload_aborted' }, 'upload_aborted');
        return;
      }
      next(isRelayError(err) ? err : toRelayError(err));
    } finally {
      clearTimeout(deadline);
      deps.metrics.uploadsInProgress.dec();
      untrack();
    }
  };
}

interface Chunk {
  req: Request;
  res: Response;
  deps: TokenUploadDeps;
  grant: UploadTokenGrant;
  hash: string;
  form: ChunkForm;
  range: ChunkRange;
  /** 0: no limit. */
  limit: number;
  signal: AbortSignal;
  log: Logger;
}

/** A file in one request: the engine cuts it into parts, retries them and cleans up on failure. */
async function wholeFile(c: Chunk): Promise<Video> {
  const { deps, grant, form } = c;
  const target = targetFor(grant, form.filename);
  await grant.consume();
  const progress: UploadProgress = {
    createdContainer: false,
    bytes: 0,
    partsAcknowledged: 0,
    retries: 0,
  };
  const started = performance.now();
  deps.metrics.uploadsStarted.inc({ principal: grant.record.principal });
  try {
    const video = await relayUpload(
      deps.client,
      { ...deps.settings, maxFileSize: c.limit },
      {
        file: form.stream,
        target,
        signal: c.signal,
        bodyComplete: form.complete.then(() => undefined),
        classifyStreamError: (err) =>
          new RelayError(
            'malformed_multipart',
            `The multipart body is malformed: ${(err as Error).message}.`,
          ),
        progress,
        logger: c.log,
        observer: observerFor(deps.metrics),
      },
    );
    await deps.tokens.store.saveUpload(c.hash, {
      videoId: video.videoId,
      created: progress.createdContainer,
      progress: {},
      bytes: progress.bytes,
      parts: progress.partsAcknowledged,
      completed: true,
    });
    deps.metrics.uploadsCompleted.inc({ principal: grant.record.principal });
    logFinished(
      c.log,
      video.videoId,
      progress.bytes,
      progress.partsAcknowledged,
      started,
      'completed',
    );
    return video;
  } catch (err) {
    // Nothing of it stayed (the engine deleted what it created): the use is given back.
    await deps.tokens.store.refund(c.hash).catch(() => undefined);
    const code = err instanceof ClientGone ? 'client_aborted' : toRelayError(err).code;
    deps.metrics.uploadsFailed.inc({ code });
    logFinished(c.log, progress.videoId, progress.bytes, progress.partsAcknowledged, started, code);
    throw err;
  }
}

/** One chunk of a chunked upload: one part at api.video, into the video this token created. */
async function oneChunk(c: Chunk): Promise<Video> {
  const { deps, grant, hash, form, range } = c;
  const store = deps.tokens.store;
  let upload = await uploadFor(c);
  const plan = planOrRefuse(range, upload?.progress ?? {});
  if (c.limit > 0 && range.kind === 'bytes' && range.size > c.limit) throw tooLarge(c.limit);
  let startedHere = false;
  if (!upload) {
    const target = targetFor(grant, form.filename);
    await grant.consume();
    startedHere = true;
    try {
      const container = await openContainer(deps.client, target, { signal: c.signal });
      upload = {
        videoId: container.videoId,
        created: container.created,
        progress: {},
        bytes: 0,
        parts: 0,
        completed: false,
      };
      await store.saveUpload(hash, upload);
    } catch (err) {
      await store.refund(hash).catch(() => undefined);
      throw err;
    }
    deps.metrics.uploadsStarted.inc({ principal: grant.record.principal });
    c.log.info(
      { event: 'upload_started', videoId: upload.videoId, route: 'upload-token' },
      'upload started',
    );
  }
  const current = upload;
  const started = performance.now();
  let received = 0;
  // What broke the body, if it broke: the upstream call then fails too, but this is the reason.
  const broken: { error?: unknown } = {};
  const counted = countBytes(form.stream, broken, (n) => {
    received += n;
    deps.metrics.bytesReceived.inc(n);
    if (c.limit > 0 && current.bytes + received > c.limit) throw tooLarge(c.limit);
    if (plan.length !== undefined && received > plan.length)
      throw new RelayError(
        'upload_chunk_invalid',
        `The chunk is longer than its Content-Range says (${plan.length} bytes).`,
      );
    if (received > MAX_CHUNK)
      throw new RelayError('file_too_large', `A chunk is at most ${formatBytes(MAX_CHUNK)}.`);
  });
  try {
    const video = await c.deps.client.uploadPartStream(
      current.videoId,
      plan.part,
      plan.last,
      counted,
      plan.length,
      {
        signal: c.signal,
      },
    );
    if (plan.length !== undefined && received !== plan.length)
      throw new RelayError(
        'upload_chunk_invalid',
        `The chunk has ${received} bytes, not the ${plan.length} its Content-Range says.`,
      );
    const { videoIdAfter } = await form.complete;
    if (videoIdAfter !== undefined && videoIdAfter !== current.videoId) throw notThisToken();
    deps.metrics.bytesRelayed.inc(received);
    deps.metrics.partDuration.observe((performance.now() - started) / 1000);
    const next: TokenUpload = {
      ...current,
      progress: plan.progress,
      bytes: current.bytes + received,
      parts: current.parts + 1,
      completed: current.completed || plan.last,
    };
    await store.saveUpload(hash, next);
    c.log.info(
      {
        event: 'upload_chunk',
        videoId: current.videoId,
        part: plan.part,
        last: plan.last,
        bytes: received,
      },
      'chunk relayed',
    );
    if (plan.last) {
      deps.metrics.uploadsCompleted.inc({ principal: grant.record.principal });
      logFinished(c.log, current.videoId, next.bytes, next.parts, started, 'completed');
    }
    return video;
  } catch (failure) {
    const err = c.signal.aborted
      ? (c.signal.reason as Error)
      : (broken.error ?? failure) instanceof RelayError
        ? (broken.error ?? failure)
        : broken.error !== undefined
          ? new RelayError('malformed_multipart', 'The multipart body ended before the chunk did.')
          : failure;
    if (startedHere && current.parts === 0) {
      // The upload never got a part in: undo it whole, so a retry starts afresh with its use.
      if (current.created)
        await deps.client
          .deleteVideo(current.videoId, { signal: AbortSignal.timeout(30_000) })
          .catch((e: unknown) =>
            c.log.warn(
              { videoId: current.videoId, err: String(e) },
              'could not delete an empty container',
            ),
          );
      await store.forgetUpload(hash, current.videoId).catch(() => undefined);
      await store.refund(hash).catch(() => undefined);
    }
    const code = err instanceof ClientGone ? 'client_aborted' : toRelayError(err).code;
    c.log.info(
      { event: 'upload_chunk_failed', videoId: current.videoId, part: plan.part, code },
      'chunk failed',
    );
    throw err;
  }
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

/** The stricter of the relay's UPLOAD_MAX_FILE_SIZE and the token's maxFileSize; 0: none. */
function sizeLimit(relay: number, token: number | undefined): number {
  if (!token) return relay;
  return relay > 0 ? Math.min(relay, token) : token;
}

async function* countBytes(
  stream: AsyncIterable<Buffer>,
  broken: { error?: unknown },
  seen: (bytes: number) => void,
): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of stream) {
      seen(chunk.length);
      yield chunk;
    }
  } catch (err) {
    broken.error = err;
    throw err;
  }
}

function tooLarge(limit: number): RelayError {
  return new RelayError('file_too_large', `The file is larger than ${formatBytes(limit)}.`);
}

function notThisToken(): RelayError {
  return new RelayError('forbidden', 'This upload token did not start an upload into that video.');
}

function observerFor(metrics: RelayMetrics): UploadObserver {
  return {
    received: (bytes) => {
      metrics.bytesReceived.inc(bytes);
      metrics.bytesBuffered.inc(bytes);
    },
    partAcknowledged: (bytes, seconds) => {
      metrics.bytesRelayed.inc(bytes);
      metrics.bytesBuffered.dec(bytes);
      metrics.partDuration.observe(seconds);
    },
    released: (bytes) => metrics.bytesBuffered.dec(bytes),
    retried: (reason) => metrics.upstreamRetries.inc({ reason }),
  };
}

function logFinished(
  log: Logger,
  videoId: string | undefined,
  bytes: number,
  parts: number,
  started: number,
  outcome: string,
): void {
  log.info(
    {
      event: 'upload_finished',
      route: 'upload-token',
      outcome,
      videoId,
      bytes,
      parts,
      durationMs: Math.round(performance.now() - started),
    },
    'upload finished',
  );
}

function uploadDeadline(ms: number, stop: AbortController): NodeJS.Timeout | undefined {
  if (ms <= 0) return undefined;
  const error = new RelayError('upload_timeout', `The upload took longer than ${ms} ms.`);
  return setTimeout(() => stop.abort(error), ms).unref();
}
