import { randomBytes } from 'node:crypto';
import { Router, type Request, type RequestHandler, type Response } from 'express';
import type { Logger } from 'pino';
import { formatBytes } from '../config';
import { RelayError } from '../errors';
import { principalOf } from '../http/client-auth';
import { continueIfExpected } from '../http/linger';
import { guardUploadRequest, type GuardDeps } from '../http/upload-request';
import type { RelayMetrics } from '../metrics';
import {
  ClientGone,
  freshState,
  type TailChange,
  type UploadEngine,
  type UploadObserver,
} from '../upload/engine';
import { bodyStream } from '../upload/stream-buffers';
import { uploadTarget, type FieldValues, type UploadTarget } from '../upload/video-fields';
import { bindTokenFields, uploadTokenOf } from '../upload-tokens/bind';
import type { SessionStore, TailWrite, UploadSession } from './session-store';
import type { UploadLocker } from './upload-lock';
import {
  OFFSET_STREAM,
  TUS_EXTENSIONS,
  TUS_VERSION,
  UPLOAD_ID,
  parseCount,
  parseMetadata,
} from './tus-protocol';

export const UPLOADS_PATH = '/v1/uploads';

export interface ResumableDeps extends GuardDeps {
  engine: UploadEngine;
  sessions: SessionStore;
  locker: UploadLocker;
  observer: UploadObserver;
  metrics: RelayMetrics;
  logger: Logger;
  authenticate: RequestHandler;
  /** Admission (drain, concurrency, per-client): for requests that start or move an upload. */
  admit: RequestHandler;
  ttlMs: number;
  maxSessionsPerClient: number;
  /** Bytes all tails together may hold in the session store. */
  maxStoredBytes: number;
  metadataLimits: { maxEntries: number; maxValueBytes: number };
  /** How long a request waits for another instance's lock on the same upload. */
  lockWaitMs?: number;
}

/** tus metadata as form fields: `tags` is a comma-separated list there. */
function fieldsOf(metadata: Record<string, string | null>): FieldValues {
  const fields: FieldValues = new Map();
  for (const [name, value] of Object.entries(metadata)) {
    if (value === null || name === 'filename' || name === 'filetype') continue;
    fields.set(
      name,
      name === 'tags'
        ? value
            .split(',')
            .map((t) => t.trim())
            .filter(Boolean)
        : [value],
    );
  }
  return fields;
}

function notFound(): RelayError {
  return new RelayError('upload_not_found', 'There is no such upload (it may have expired).');
}

const header = (req: Request, name: string): string | undefined => {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
};

/**
 * /v1/uploads: tus 1.0 (creation, creation-with-upload, creation-defer-length, termination,
 * expiration) as a thin adapter on the upload engine: it loads and saves the session between
 * requests and answers offsets; the engine moves the bytes. The upload id a request acts on is
 * the one Express parsed from the path, and the ownership check reads that same id.
 */
export function resumableRoutes(deps: ResumableDeps): {
  router: Router;
  sweepExpired(): Promise<number>;
} {
  const { sessions, locker, engine, metrics } = deps;
  const lockWaitMs = deps.lockWaitMs ?? 10_000;
  const router = Router();

  /** Every answer under /v1/uploads says its tus version; requests must speak 1.0.0. */
  const tusVersion: RequestHandler = (req, res, next) => {
    res.setHeader('Tus-Resumable', TUS_VERSION);
    if (req.method === 'OPTIONS') return next();
    // X-HTTP-Method-Override: for clients behind proxies that only pass GET and POST.
    const override = header(req, 'x-http-method-override')?.toUpperCase();
    if (req.method === 'POST' && (override === 'PATCH' || override === 'DELETE'))
      req.method = override;
    if (req.method === 'GET') return next();
    if (header(req, 'tus-resumable') !== TUS_VERSION) {
      res.setHeader('Tus-Version', TUS_VERSION);
      return next(new RelayError('tus_version_unsupported', `Send Tus-Resumable: ${TUS_VERSION}.`));
    }
    next();
  };

  /** The session an id names, for its owner only: anyone else is told it does not exist. */
  async function ownSession(id: string, res: Response): Promise<UploadSession> {
    if (!UPLOAD_ID.test(id)) throw notFound();
    const session = await sessions.get(id);
    if (!session || session.owner !== principalOf(res).id) throw notFound();
    // An upload token reaches the upload it started, not every upload of its minting principal.
    const grant = uploadTokenOf(res);
    if (grant && session.uploadTokenId !== grant.id) throw notFound();
    return session;
  }

  const offsetOf = (session: UploadSession) => session.state.ackedBytes + session.tailBytes;

  function describe(res: Response, session: UploadSession): void {
    res.setHeader('Upload-Offset', String(offsetOf(session)));
    if (session.length === undefined) res.setHeader('Upload-Defer-Length', '1');
    else res.setHeader('Upload-Length', String(session.length));
    res.setHeader('Upload-Expires', new Date(session.expiresAt).toUTCString());
    if (session.completed && session.state.videoId)
      res.setHeader('Upload-Video-Id', session.state.videoId);
  }

  const discover: RequestHandler = (_req, res) => {
    res.setHeader('Tus-Version', TUS_VERSION);
    res.setHeader('Tus-Extension', TUS_EXTENSIONS.join(','));
    if (engine.settings.maxFileSize > 0)
      res.setHeader('Tus-Max-Size', String(engine.settings.maxFileSize));
    res.status(204).end();
  };

  const create: RequestHandler = async (req, res) => {
    const principal = principalOf(res).id;
    const length = parseCount('Upload-Length', header(req, 'upload-length'));
    const deferred = header(req, 'upload-defer-length');
    if (deferred !== undefined && deferred !== '1')
      throw new RelayError('invalid_tus_header', 'Upload-Defer-Length must be 1.');
    if ((length === undefined) === (deferred === undefined))
      throw new RelayError(
        'invalid_tus_header',
        'Send either Upload-Length or Upload-Defer-Length: 1.',
      );
    if (length === 0) throw new RelayError('empty_file', 'The file has no bytes.');
    checkSize(length);
    const rawMetadata = header(req, 'upload-metadata');
    const metadata = parseMetadata(rawMetadata, deps.metadataLimits);
    const asked: UploadTarget = uploadTarget(fieldsOf(metadata), metadata.filename ?? undefined);
    // An upload token's fields win over the client's metadata (its use was counted at auth).
    const grant = uploadTokenOf(res);
    const target = grant ? bindTokenFields(asked, grant.record) : asked;
    const now = Date.now();
    const session: UploadSession = {
      id: randomBytes(16).toString('base64url'),
      owner: principal,
      length,
      rawMetadata,
      target,
      state: freshState(),
      tailBytes: 0,
      completed: false,
      video: undefined,
      createdAt: now,
      expiresAt: now + deps.ttlMs,
      ...(grant ? { uploadTokenId: grant.id, maxFileSize: grant.record.fields.maxFileSize } : {}),
    };
    if (!(await sessions.create(session, deps.maxSessionsPerClient))) {
      throw new RelayError(
        'too_many_sessions',
        `You have ${deps.maxSessionsPerClient} unfinished resumable uploads; finish or terminate one first.`,
        { headers: { 'Retry-After': '60' } },
      );
    }
    metrics.uploadsStarted.inc({ route: 'resumable' });
    req.log.info(
      { event: 'upload_created', uploadId: session.id, principal, length },
      'resumable upload created',
    );
    res.setHeader('Location', `${UPLOADS_PATH}/${session.id}`);
    res.setHeader('Upload-Expires', new Date(session.expiresAt).toUTCString());
    // A body sent chunked (no Content-Length) is an upload too.
    const withUpload =
      header(req, 'content-type')?.toLowerCase().startsWith(OFFSET_STREAM) && hasBody(req);
    if (!withUpload) return void res.status(201).end();
    await write(req, res, session.id, 0, 201);
  };

  function checkSize(length: number | undefined): void {
    const max = engine.settings.maxFileSize;
    if (length !== undefined && max > 0 && length > max)
      throw new RelayError('file_too_large', `The file is larger than ${formatBytes(max)}.`);
  }

  const head: RequestHandler = async (req, res) => {
    const session = await ownSession(String(req.params.id), res);
    describe(res, session);
    if (session.rawMetadata) res.setHeader('Upload-Metadata', session.rawMetadata);
    res.setHeader('Cache-Control', 'no-store');
    res.status(200).end();
  };

  const info: RequestHandler = async (req, res) => {
    const session = await ownSession(String(req.params.id), res);
    res.setHeader('Cache-Control', 'no-store');
    res.json({
      id: session.id,
      offset: offsetOf(session),
      length: session.length ?? null,
      completed: session.completed,
      videoId: session.state.videoId ?? null,
      video: session.video ?? null,
      expiresAt: new Date(session.expiresAt).toISOString(),
    });
  };

  const patch: RequestHandler = async (req, res) => {
    const id = String(req.params.id);
    if (!UPLOAD_ID.test(id)) throw notFound();
    if (!header(req, 'content-type')?.toLowerCase().startsWith(OFFSET_STREAM))
      throw new RelayError('unsupported_media_type', `Send the bytes as ${OFFSET_STREAM}.`);
    const offset = parseCount('Upload-Offset', header(req, 'upload-offset'));
    if (offset === undefined)
      throw new RelayError('invalid_tus_header', 'Upload-Offset is required.');
    await write(req, res, id, offset, 204);
  };

  /**
   * One request's bytes into an upload: under its lock, from the offset the client names, through
   * the engine; then the durable state is saved and the offset answered.
   */
  async function write(
    req: Request,
    res: Response,
    id: string,
    offset: number,
    status: 201 | 204,
  ): Promise<void> {
    const principal = principalOf(res).id;
    const log = req.log.child({ principal, uploadId: id });
    const guard = guardUploadRequest(res, deps);
    let lock: Awaited<ReturnType<UploadLocker['acquire']>> | undefined;
    try {
      // Ownership before the lock: taking it would ask the owner's request in flight to stop.
      await ownSession(id, res);
      lock = await locker.acquire(
        id,
        AbortSignal.any([guard.signal, AbortSignal.timeout(lockWaitMs)]),
        () => guard.abort(superseded()),
      );
      const session = await ownSession(id, res);
      if (session.completed && offset === offsetOf(session) && !hasBody(req)) {
        describe(res, session);
        return void res.status(status).end();
      }
      if (offset !== offsetOf(session))
        throw new RelayError(
          'offset_mismatch',
          `Upload-Offset is ${offset}, but the upload is at ${offsetOf(session)}: ask with HEAD and resume from there.`,
        );
      const declared = parseCount('Upload-Length', header(req, 'upload-length'));
      if (declared !== undefined) {
        if (session.length !== undefined && declared !== session.length)
          throw new RelayError('invalid_tus_header', 'Upload-Length cannot change.');
        if (declared < offset)
          throw new RelayError('invalid_tus_header', 'Upload-Length is below the offset.');
        checkSize(declared);
        session.length = declared;
      }
      // Room left in the session store, all uploads together. A full store refuses nobody up
      // front: bytes that go straight to api.video as parts need none, and what cannot be kept
      // is simply not counted (the client sends it again), so one client filling the store
      // cannot stop everyone else's uploads.
      const room = Math.max(0, deps.maxStoredBytes - (await sessions.heldBytes()));
      continueIfExpected(req, res);
      // Our own stream over the body: stopping it must not destroy the socket we answer on.
      const file = req.pipe(bodyStream());
      const signal = AbortSignal.any([guard.signal, lock.lost]);
      const tailBefore = session.tailBytes;
      const result = await engine.transfer({
        identity: identityOf(session),
        maxFileSize: session.maxFileSize,
        target: session.target,
        state: session.state,
        file,
        signal,
        logger: log,
        end: { kind: 'length', length: session.length },
        carried: { bytes: session.tailBytes, load: () => sessions.tail(id) },
        checkpoint: async (state, consumedCarried) => {
          if (lock!.lost.aborted) throw lock!.lost.reason;
          // `state` is a snapshot; session.state stays the live object the engine updates.
          const before = session.tailBytes;
          const tailBytes = consumedCarried ? 0 : before;
          const completed = session.length !== undefined && state.ackedBytes === session.length;
          const tail: TailWrite = consumedCarried
            ? { kind: 'replace', chunks: [] }
            : { kind: 'keep' };
          await sessions.save({ ...session, state, tailBytes, completed }, tail, before);
          session.tailBytes = tailBytes;
          session.completed = completed;
        },
      });
      req.unpipe(file);
      if (result.kind === 'completed') {
        session.completed = true;
        session.video = result.video;
        const before = session.tailBytes;
        session.tailBytes = 0;
        await sessions.save(session, { kind: 'replace', chunks: [] }, before);
        describe(res, session);
        return void res.status(status).end();
      }
      if (lock.lost.aborted) throw lock.lost.reason;
      const dropped = await keepTail(session, result.tail, tailBefore, room);
      if (result.kind === 'paused' && dropped === 0) {
        describe(res, session);
        return void res.status(status).end();
      }
      if (result.kind === 'paused') {
        res.setHeader('Upload-Offset', String(offsetOf(session)));
        throw storeFull();
      }
      const { error } = result;
      deps.observer.interrupted('resumable', error.code);
      log.warn(
        {
          event: 'upload_interrupted',
          code: error.code,
          videoId: session.state.videoId,
          offset: offsetOf(session),
        },
        'resumable upload interrupted; it can be resumed from its offset',
      );
      if (error instanceof ClientGone) return;
      res.setHeader('Upload-Offset', String(offsetOf(session)));
      throw error;
    } finally {
      guard.done();
      await lock?.release();
    }
  }

  /** Saves what the engine says to keep; the record's offset then counts exactly those bytes. */
  /**
   * Saves what the engine says to keep, within the store's room; the record's offset then counts
   * exactly the bytes kept. Returns how many bytes did not fit (the client sends them again).
   */
  async function keepTail(
    session: UploadSession,
    tail: TailChange,
    tailBefore: number,
    room: number,
  ): Promise<number> {
    const current = session.tailBytes;
    const wanted = tail.kind === 'append' ? tailBefore + tail.bytes : tail.bytes;
    const fits = Math.min(wanted, Math.max(current, tailBefore) + room);
    const dropped = wanted - fits;
    const keep = tail.bytes - dropped;
    const chunks = truncateChunks(tail.chunks, keep);
    const write: TailWrite =
      tail.kind === 'append' ? { kind: 'append', chunks } : { kind: 'replace', chunks };
    session.tailBytes = fits;
    await sessions.save(session, write, current);
    return dropped;
  }

  const terminate: RequestHandler = async (req, res) => {
    const id = String(req.params.id);
    if (!UPLOAD_ID.test(id)) throw notFound();
    await ownSession(id, res);
    const lock = await locker.acquire(id, AbortSignal.timeout(lockWaitMs), () => undefined);
    try {
      const session = await ownSession(id, res);
      if (session.completed)
        throw new RelayError('upload_completed', 'This upload is complete; its video stays.');
      await engine.fail({
        identity: identityOf(session),
        target: session.target,
        state: session.state,
        code: 'upload_terminated',
        kind: 'failed',
        bytesReceived: offsetOf(session),
        logger: req.log,
      });
      await sessions.remove(session);
      res.status(204).end();
    } finally {
      await lock.release();
    }
  };

  function identityOf(session: UploadSession) {
    return {
      uploadId: session.id,
      route: 'resumable' as const,
      principal: session.owner,
      startedAt: session.createdAt,
      ...(session.uploadTokenId ? { uploadTokenId: session.uploadTokenId } : {}),
    };
  }

  /** Sessions past their expiry: containers the relay made are deleted, then the sessions. */
  async function sweepExpired(): Promise<number> {
    let removed = 0;
    for (const id of await sessions.expired(Date.now(), 100)) {
      let lock;
      try {
        lock = await locker.acquire(id, AbortSignal.timeout(1_000), () => undefined);
        const session = await sessions.get(id);
        if (!session) continue;
        if (!session.completed) {
          await engine.fail({
            identity: identityOf(session),
            target: session.target,
            state: session.state,
            code: 'upload_expired',
            kind: 'expired',
            bytesReceived: offsetOf(session),
            logger: deps.logger,
          });
        }
        await sessions.remove(session);
        removed += 1;
      } catch (err) {
        deps.logger.warn({ uploadId: id, err: String(err) }, 'could not remove an expired upload');
      } finally {
        await lock?.release();
      }
    }
    if (removed > 0) deps.logger.info({ removed }, 'removed expired resumable uploads');
    return removed;
  }

  const catchAll: RequestHandler = (req, _res, next) =>
    next(new RelayError('route_not_found', `There is no ${req.method} ${req.path}.`));

  router.use(UPLOADS_PATH, tusVersion);
  router.options([UPLOADS_PATH, `${UPLOADS_PATH}/:id`], discover);
  router.post(UPLOADS_PATH, deps.authenticate, deps.admit, create);
  router.head(`${UPLOADS_PATH}/:id`, deps.authenticate, head);
  router.get(`${UPLOADS_PATH}/:id`, deps.authenticate, info);
  router.patch(`${UPLOADS_PATH}/:id`, deps.authenticate, deps.admit, patch);
  router.delete(`${UPLOADS_PATH}/:id`, deps.authenticate, terminate);
  router.all([UPLOADS_PATH, `${UPLOADS_PATH}/*rest`], catchAll);
  return { router, sweepExpired };
}

function storeFull(): RelayError {
  return new RelayError(
    'session_store_full',
    'The relay holds as many resumable bytes as it may: what did not fit is not counted; send it again shortly.',
    { headers: { 'Retry-After': '30' } },
  );
}

function truncateChunks(chunks: Buffer[], bytes: number): Buffer[] {
  const kept: Buffer[] = [];
  let left = bytes;
  for (const chunk of chunks) {
    if (left <= 0) break;
    kept.push(chunk.length <= left ? chunk : chunk.subarray(0, left));
    left -= chunk.length;
  }
  return kept;
}

function hasBody(req: Request): boolean {
  const length = req.headers['content-length'];
  return length !== undefined ? length !== '0' : req.headers['transfer-encoding'] !== undefined;
}

function superseded(): RelayError {
  return new RelayError(
    'upload_locked',
    'A newer request for this upload took over; this one stopped at the durable offset.',
  );
}
