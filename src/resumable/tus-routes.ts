import type { IncomingMessage } from 'node:http';
import { Server } from '@tus/server';
import type { Locker, Upload } from '@tus/utils';
import { Router, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { ApiVideoClient } from '../apivideo/client';
import { RelayError, isRelayError } from '../errors';
import { principalOf } from '../http/client-auth';
import { uploadTarget, type FieldValues } from '../upload/video-fields';
import { RelayStore, tusError } from './relay-store';
import type { SessionStore, UploadSession } from './sessions';

export const UPLOADS_PATH = '/v1/uploads';

export interface ResumableDeps {
  client: ApiVideoClient;
  sessions: SessionStore;
  locker: Locker;
  partSize: number;
  maxFileSize: number;
  ttlMs: number;
  trustProxy: boolean;
  logger: Logger;
}

type NodeReqWithPrincipal = IncomingMessage & { relayPrincipal?: string };

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

function targetOf(metadata: Record<string, string | null>) {
  return uploadTarget(fieldsOf(metadata), metadata.filename ?? undefined);
}

/**
 * /v1/uploads: tus 1.0 (creation, creation-with-upload, creation-defer-length, termination,
 * expiration) through @tus/server, with our client auth in front and a store that relays to
 * api.video. Only the principal that created an upload may resume, read or terminate it.
 */
export function resumableRoutes(deps: ResumableDeps): {
  router: Router;
  store: RelayStore;
  tus: Server;
} {
  const store = new RelayStore({
    client: deps.client,
    sessions: deps.sessions,
    partSize: deps.partSize,
    ttlMs: deps.ttlMs,
    logger: deps.logger,
    targetOf: (session: UploadSession) => targetOf(session.metadata),
  });
  const tus = new Server({
    path: UPLOADS_PATH,
    datastore: store,
    locker: deps.locker,
    relativeLocation: true,
    respectForwardedHeaders: deps.trustProxy,
    maxSize: deps.maxFileSize > 0 ? deps.maxFileSize : undefined,
    disableTerminationForFinishedUploads: true,
    allowedHeaders: ['Authorization', 'X-Request-Id'],
    exposedHeaders: ['Upload-Video-Id', 'X-Request-Id'],
    onUploadCreate: async (req, upload: Upload) => {
      const nodeReq = (req as unknown as { runtime?: { node?: { req: NodeReqWithPrincipal } } })
        .runtime?.node?.req;
      if (upload.size === 0) throw tusError(new RelayError('empty_file', 'The file has no bytes.'));
      try {
        targetOf(upload.metadata ?? {});
      } catch (err) {
        if (isRelayError(err)) throw tusError(err);
        throw err;
      }
      store.pendingOwners.set(upload.id, nodeReq?.relayPrincipal ?? 'anonymous');
      return {};
    },
    onUploadFinish: async (_req, upload: Upload) => {
      const stored = await deps.sessions.load(upload.id);
      return stored?.session.videoId
        ? { headers: { 'Upload-Video-Id': stored.session.videoId } }
        : {};
    },
  });

  const router = Router();
  const ownerOnly: RequestHandler = async (req, res, next) => {
    const stored = await deps.sessions.load(String(req.params.id));
    if (stored && stored.session.owner !== principalOf(res).id) {
      return next(new RelayError('forbidden', 'This upload was started by someone else.'));
    }
    next();
  };
  router.get(`${UPLOADS_PATH}/:id`, ownerOnly, async (req, res, next) => {
    // Express routes HEAD to GET handlers; tus's HEAD (the offset) is tus's to answer.
    if (req.method === 'HEAD') return next('route');
    const stored = await deps.sessions.load(String(req.params.id));
    if (!stored)
      return next(
        new RelayError('route_not_found', 'There is no such upload (it may have expired).'),
      );
    const { session, tail } = stored;
    res.json({
      id: session.id,
      offset: session.ackedBytes + tail.length,
      length: session.length ?? null,
      completed: session.completed,
      videoId: session.videoId ?? null,
      video: session.video ?? null,
      expiresAt: new Date(session.expiresAt).toISOString(),
    });
  });
  const handOver: RequestHandler = (req, res) => {
    (req as NodeReqWithPrincipal).relayPrincipal = principalOf(res).id;
    void tus.handle(req, res);
  };
  router.all(`${UPLOADS_PATH}/:id`, ownerOnly, handOver);
  router.all(UPLOADS_PATH, handOver);
  return { router, store, tus };
}
