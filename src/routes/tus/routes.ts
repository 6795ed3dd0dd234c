import { randomBytes } from 'node:crypto';
import {
  Router,
  type ErrorRequestHandler,
  type Request,
  type RequestHandler,
  type Response,
} from 'express';
import type { Logger } from 'pino';
import { RelayError, ClientGone } from '../../kernel/errors';
import { principalOf } from '../../http/client-auth';
import { continueIfExpected } from '../../http/linger';
import { guardUploadRequest, type GuardDeps } from '../../http/upload-request';
import { freshState, type TailChange, type UploadObserver } from '../../engine/contract';
import type { UploadEngine } from '../../engine/engine';
import { acknowledgedParts, highestPart } from '../../engine/ledger';
import { bodyStream } from '../../http/stream-buffers';
import { truncateChunks } from '../../engine/transfer';
import { uploadTarget, type FieldValues, type UploadTarget } from '../../engine/video-fields';
import { bindTokenFields, uploadTokenOf } from '../../upload-tokens/bind';
import { type TailWrite } from '../../stores/session-store';
import {
  OFFSET_STREAM,
  TUS_EXTENSIONS,
  TUS_VERSION,
  UPLOAD_ID,
  parseCount,
  parseMetadata,
} from './protocol';
import type { UploadLock } from '../../stores/upload-lock';
import { expiredError, type UploadSessions } from '../../sessions/upload-sessions';
import { SESSION_VERSION, type UploadSession } from '../../sessions/session';
import { declaresBody } from '../../http/body';
import { fileTooLarge } from '../../kernel/errors';

export const UPLOADS_PATH = '/v1/uploads';

export interface ResumableDeps extends GuardDeps {
  engine: UploadEngine;
  sessions: UploadSessions;
  observer: UploadObserver;
  logger: Logger;
  authenticate: RequestHandler;
  /** Admission (drain, concurrency, per-client): for requests that start or move an upload. */
  admit: RequestHandler;
  ttlMs: number;
  maxSessionsPerClient: number;
  /** Bytes all tails together may hold in the session store. */
  maxStoredBytes: number;
  /** Bytes one principal's tails may hold in it. */
  maxStoredBytesPerClient: number;
  metadataLimits: { maxEntries: number; maxValueBytes: number };
  /** How long a request waits for another request's lock on the same upload. */
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

/** The offset a client is told: acknowledged bytes, and the bytes kept beside the record. */
export const offsetOf = (session: UploadSession) =>
  session.state.ledger.ackedBytes + session.tailBytes;

/** Remembers the upload's offset as last saved, for an answer that interrupts it. */
function durable(res: Response, saved: UploadSession): void {
  res.locals.tusOffset = offsetOf(saved);
}

/**
 * /v1/uploads: tus 1.0 (creation, creation-with-upload, creation-defer-length, termination,
 * expiration) as a thin adapter on the upload engine: it loads and saves the session between
 * requests and answers offsets; the engine moves the bytes and settles with api.video. Every
 * request that reads or moves an upload's offset holds its lock, so none answers from a state
 * another request is still changing. The upload id a request acts on is the one Express parsed
 * from the path, and the ownership check reads that same id.
 */
export function resumableRoutes(deps: ResumableDeps): Router {
  const { sessions, engine } = deps;
  const store = sessions.store;
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

  /** Whether this request's principal may see the session; anyone else is told it does not exist. */
  function owns(session: UploadSession | undefined, res: Response): session is UploadSession {
    if (!session || session.kind !== 'tus' || session.owner !== principalOf(res).id) return false;
    // An upload token reaches the upload it started, not every upload of its minting principal.
    const grant = uploadTokenOf(res);
    return !grant || session.uploadTokenId === grant.id;
  }

  async function ownSession(id: string, res: Response): Promise<UploadSession> {
    if (!UPLOAD_ID.test(id)) throw notFound();
    const session = await store.get(id);
    if (!owns(session, res)) throw notFound();
    return session;
  }

  /**
   * Runs `work` on the upload under its lock, with its record read afresh and settled with
   * api.video; an upload past its expiry is ended first (and answered 410). Ownership is checked
   * before the lock too: taking it asks the holder to stop, which only the owner may do.
   */
  async function underLock<T>(
    id: string,
    res: Response,
    log: Logger,
    signal: AbortSignal,
    onReleaseRequested: () => void,
    work: (session: UploadSession, lock: UploadLock) => Promise<T>,
  ): Promise<T> {
    await ownSession(id, res);
    const lock = await sessions.locker.acquire(
      id,
      AbortSignal.any([signal, AbortSignal.timeout(lockWaitMs)]),
      onReleaseRequested,
    );
    try {
      const session = await ownSession(id, res);
      if (sessions.isExpired(session)) {
        const ended = await sessions.end(
          session,
          { kind: 'expired', code: 'upload_expired' },
          log,
          lock,
        );
        if (ended.kind === 'open') throw expiredError();
      } else {
        await sessions.settle(session, log, lock);
      }
      durable(res, session);
      return await work(session, lock);
    } finally {
      await lock.release();
    }
  }

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
    // Concatenation (tus-js-client's parallelUploads) would make each partial upload a video of
    // its own: refused before anything exists, with what to do instead.
    if (header(req, 'upload-concat') !== undefined)
      throw new RelayError(
        'tus_concatenation_unsupported',
        'This relay does not take tus concatenation (Upload-Concat): send the file as one upload (with tus-js-client, parallelUploads: 1).',
      );
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
    const grant = uploadTokenOf(res);
    checkSize(length, grant?.record.fields.maxFileSize);
    const rawMetadata = header(req, 'upload-metadata');
    const metadata = parseMetadata(rawMetadata, deps.metadataLimits);
    const asked: UploadTarget = uploadTarget(fieldsOf(metadata), metadata.filename ?? undefined);
    // An upload token's fields win over the client's metadata.
    const target = grant ? bindTokenFields(asked, grant.record) : asked;
    // Everything the request says has been checked: the upload starts, and counts the token's use.
    const tokenUse = await grant?.consume();
    const now = Date.now();
    const session: UploadSession = {
      v: SESSION_VERSION,
      id: randomBytes(16).toString('base64url'),
      kind: 'tus',
      owner: principal,
      length,
      rawMetadata,
      target,
      state: freshState(),
      tailBytes: 0,
      completed: false,
      video: undefined,
      createdAt: now,
      expiresAt: sessions.nextExpiry(),
      ...(grant ? { uploadTokenId: grant.id, maxFileSize: grant.record.fields.maxFileSize } : {}),
      ...(tokenUse ? { tokenUse } : {}),
    };
    // Not stored, not begun: the use goes straight back.
    let created: boolean;
    try {
      created = await store.create(session, deps.maxSessionsPerClient);
    } catch (err) {
      await grant?.refund();
      throw err;
    }
    if (!created) {
      await grant?.refund();
      throw new RelayError(
        'too_many_sessions',
        `You have ${deps.maxSessionsPerClient} unfinished resumable uploads; finish or terminate one first.`,
        { headers: { 'Retry-After': '60' } },
      );
    }
    engine.begin(sessions.identityOf(session));
    req.log.info(
      { event: 'upload_created', uploadId: session.id, principal, length },
      'resumable upload created',
    );
    res.setHeader('Location', `${UPLOADS_PATH}/${session.id}`);
    res.setHeader('Upload-Expires', new Date(session.expiresAt).toUTCString());
    // A body sent chunked (no Content-Length) is an upload too.
    const withUpload =
      header(req, 'content-type')?.toLowerCase().startsWith(OFFSET_STREAM) && declaresBody(req);
    if (!withUpload) return void res.status(201).end();
    await write(req, res, session.id, 0, 201);
  };

  /** A declared length against UPLOAD_MAX_FILE_SIZE and the upload token's maxFileSize. */
  function checkSize(length: number | undefined, tokenLimit: number | undefined): void {
    if (length === undefined) return;
    const max = engine.settings.maxFileSize;
    if (max > 0 && length > max) throw fileTooLarge(max);
    if (tokenLimit && length > tokenLimit) throw fileTooLarge(tokenLimit, 'token');
  }

  /** Waits for the request writing to the upload to stop (it is asked to), then the true offset. */
  const head: RequestHandler = async (req, res) => {
    await underLock(
      String(req.params.id),
      res,
      req.log,
      whileConnected(res),
      () => undefined,
      async (session) => {
        describe(res, session);
        if (session.rawMetadata) res.setHeader('Upload-Metadata', session.rawMetadata);
        res.setHeader('Cache-Control', 'no-store');
        res.status(200).end();
      },
    );
  };

  /** The durable state, read without the lock: a request in progress may be ahead of it. */
  const info: RequestHandler = async (req, res) => {
    const session = await ownSession(String(req.params.id), res);
    if (sessions.isExpired(session)) throw expiredError();
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
    try {
      await underLock(
        id,
        res,
        log,
        guard.signal,
        () => guard.abort(superseded()),
        async (session, lock) => {
          if (session.completed && offset === offsetOf(session) && !declaresBody(req)) {
            describe(res, session);
            return void res.status(status).end();
          }
          if (offset !== offsetOf(session))
            throw new RelayError(
              'offset_mismatch',
              `Upload-Offset is ${offset}, but the upload is at ${offsetOf(session)}: ask with HEAD and resume from there.`,
            );
          declareLength(req, session, offset);
          continueIfExpected(req, res);
          await transfer(req, res, session, lock, log, status);
        },
      );
    } catch (err) {
      if (err instanceof ClientGone) return;
      throw err;
    } finally {
      guard.done();
    }

    async function transfer(
      req: Request,
      res: Response,
      session: UploadSession,
      lock: UploadLock,
      log: Logger,
      status: 201 | 204,
    ): Promise<void> {
      // Our own stream over the body: stopping it must not destroy the socket we answer on.
      const file = req.pipe(bodyStream());
      const tailBefore = session.tailBytes;
      const result = await engine.transfer({
        identity: sessions.identityOf(session),
        maxFileSize: session.maxFileSize,
        target: session.target,
        state: session.state,
        file,
        signal: AbortSignal.any([guard.signal, lock.lost]),
        halt: guard.halt,
        logger: log,
        end: { kind: 'length', length: session.length },
        carried: { bytes: session.tailBytes, load: () => store.tail(session.id) },
        checkpoint: sessions.checkpoint(session, lock, true, (saved) => durable(res, saved)),
      });
      req.unpipe(file);
      if (result.kind === 'completed') {
        describe(res, session);
        return void res.status(status).end();
      }
      if (lock.lost.aborted) throw lock.lost.reason;
      if (status === 201 && result.kind === 'interrupted') {
        const ended = await endFailedCreation(res, session, lock, log, result.error.code);
        if (ended === 'completed') {
          describe(res, session);
          return void res.status(status).end();
        }
        if (ended === 'ended') throw result.error;
      }
      const dropped = await keepTail(session, result.tail, tailBefore);
      durable(res, session);
      if (result.kind === 'paused' && dropped === 0) {
        describe(res, session);
        return void res.status(status).end();
      }
      if (result.kind === 'paused') throw storeFull();
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
      throw error;
    }
  }

  /** Upload-Length on a PATCH: once, never below what is already sent or on the wire. */
  function declareLength(req: Request, session: UploadSession, offset: number): void {
    const declared = parseCount('Upload-Length', header(req, 'upload-length'));
    if (declared === undefined) return;
    if (session.length !== undefined && declared !== session.length)
      throw new RelayError('invalid_tus_header', 'Upload-Length cannot change.');
    if (declared < offset)
      throw new RelayError('invalid_tus_header', 'Upload-Length is below the offset.');
    // A part sent as not the last promised more bytes after it.
    const { ledger } = session.state;
    const last = ledger.parts.at(-1);
    if (last?.from !== undefined && !last.last && declared <= last.from + last.size)
      throw new RelayError(
        'invalid_tus_header',
        `Upload-Length must be above ${last.from + last.size}: part ${highestPart(ledger)} was sent with more to come.`,
      );
    // Refused when declared, not once the bytes pass the limit.
    checkSize(declared, session.maxFileSize);
    session.length = declared;
  }

  /**
   * A creation whose request failed before api.video acknowledged any part ends its upload (its
   * container deleted, its token's use given back): a client told its creation failed starts
   * over with a new one (tus-js-client does) rather than resume this one, which would otherwise
   * hold a session, its bytes and a token's use until it expired. `ended`: the answer then names
   * no upload; `open`: it goes on (a part is at api.video, or api.video could not say whether the
   * last one landed), and the client may resume it from the answer's Location; `completed`: the
   * last part landed after all.
   */
  async function endFailedCreation(
    res: Response,
    session: UploadSession,
    lock: UploadLock,
    log: Logger,
    code: string,
  ): Promise<'ended' | 'open' | 'completed'> {
    if (acknowledgedParts(session.state.ledger) > 0) return 'open';
    const ended = await sessions
      .end(session, { kind: 'failed', code }, log, lock)
      .catch(() => undefined);
    if (!ended) return 'open';
    if (ended.kind === 'completed') return 'completed';
    res.removeHeader('Location');
    res.removeHeader('Upload-Expires');
    res.locals.tusOffset = undefined;
    return 'ended';
  }

  /**
   * Saves what the engine says to keep, within the room left in the session store: for all uploads
   * together (UPLOAD_SESSION_STORE_MAX_BYTES) and for this principal's (its share,
   * UPLOAD_MAX_STORED_BYTES_PER_CLIENT). A full store refuses nobody up front: bytes that go
   * straight to api.video as parts need none, and what cannot be kept is simply not counted (the
   * client sends it again), so one client filling the store, or its share, cannot stop anyone
   * else's uploads. The room is read now, after the transfer, so that uploads of one principal
   * running side by side see each other's tails. The record's offset then counts exactly the
   * bytes kept. Returns how many bytes did not fit.
   */
  async function keepTail(
    session: UploadSession,
    tail: TailChange,
    tailBefore: number,
  ): Promise<number> {
    const [all, mine] = await Promise.all([store.heldBytes(), store.heldBytes(session.owner)]);
    const room = Math.max(
      0,
      Math.min(deps.maxStoredBytes - all, deps.maxStoredBytesPerClient - mine),
    );
    // What the store counts of this upload now (its last save), plus the room beside it.
    const current = session.tailBytes;
    const wanted = tail.kind === 'append' ? tailBefore + tail.bytes : tail.bytes;
    const fits = Math.min(wanted, current + room);
    const dropped = wanted - fits;
    const keep = tail.bytes - dropped;
    const chunks = truncateChunks(tail.chunks, keep);
    const write: TailWrite =
      tail.kind === 'append' ? { kind: 'append', chunks } : { kind: 'replace', chunks };
    session.tailBytes = fits;
    // Bytes arrived: the upload is moving, its expiry moves on.
    session.expiresAt = sessions.nextExpiry();
    await store.save(session, write, current);
    return dropped;
  }

  const terminate: RequestHandler = async (req, res) => {
    const id = String(req.params.id);
    if (!UPLOAD_ID.test(id)) throw notFound();
    await underLock(
      id,
      res,
      req.log,
      whileConnected(res),
      () => undefined,
      async (session, lock) => {
        const ended = session.completed
          ? { kind: 'completed' as const }
          : await sessions.end(
              session,
              { kind: 'failed', code: 'upload_terminated' },
              req.log,
              lock,
            );
        if (ended.kind === 'completed')
          throw new RelayError('upload_completed', 'This upload is complete; its video stays.');
        res.locals.tusSession = undefined;
        res.status(204).end();
      },
    );
  };

  /**
   * Every answer that interrupts an upload says where it stands (`Upload-Offset`), whatever
   * stopped it: the engine, the lock, the drain, admission. It is the offset last saved, which a
   * HEAD would answer too: never bytes only this request has seen.
   */
  const offsetOnRefusal: ErrorRequestHandler = async (err, req, res, next) => {
    if (!res.headersSent && !res.hasHeader('Upload-Offset') && res.locals.principal) {
      try {
        let offset = res.locals.tusOffset as number | undefined;
        if (offset === undefined && UPLOAD_ID.test(String(req.params.id ?? ''))) {
          const found = await store.get(String(req.params.id));
          if (owns(found, res) && !sessions.isExpired(found)) offset = offsetOf(found);
        }
        if (offset !== undefined) res.setHeader('Upload-Offset', String(offset));
      } catch {
        // The store is away: the answer goes out without an offset (the client asks with HEAD).
      }
    }
    next(err);
  };

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
  router.use([`${UPLOADS_PATH}/:id`, UPLOADS_PATH], offsetOnRefusal);
  return router;
}

function storeFull(): RelayError {
  return new RelayError(
    'session_store_full',
    'The relay holds as many resumable bytes as it may, for all clients or for you: what did not fit is not counted; send it again shortly.',
    { headers: { 'Retry-After': '30' } },
  );
}

/** Aborted when the client goes away: a request it no longer waits for stops waiting too. */
function whileConnected(res: Response): AbortSignal {
  const gone = new AbortController();
  res.once('close', () => gone.abort(new ClientGone()));
  return gone.signal;
}

function superseded(): RelayError {
  return new RelayError(
    'upload_locked',
    'A newer request for this upload took over; this one stopped at the durable offset.',
  );
}
