import { dirname, join } from 'node:path';
import cors from 'cors';
import express from 'express';
import helmet from 'helmet';
import type { Logger, SerializedRequest } from 'pino';
import { pinoHttp } from 'pino-http';
import type { ApiVideoClient } from './apivideo/client';
import type { Config } from './config';
import { clientAuth, metricsAuth } from './http/client-auth';
import { healthRoutes, type Readiness } from './http/health';
import { problemHandler, routeNotFound } from './http/problem';
import { queryLimit } from './http/query-limit';
import { requestId } from './http/request-id';
import { uploadRoute } from './http/upload-route';
import { uploadSlots } from './http/upload-slots';
import { getVideoRoute } from './http/videos-route';
import openapi from './http/openapi.json';
import { Lifecycle } from './lifecycle';
import { MemorySessionStore, type SessionStore } from './resumable/session-store';
import { MemoryLocker, type UploadLocker } from './resumable/upload-lock';
import { resumableRoutes } from './resumable/tus-routes';
import { RelayMetrics } from './metrics';
import { UploadEngine } from './upload/engine';
import type { OutcomeSink } from './upload/outcome';
import { OutcomeRecorder, metricsObserver } from './upload/outcome-recorder';
import { MemoryBudget } from './upload/memory-budget';

export interface AppDeps {
  config: Config;
  logger: Logger;
  apivideo: ApiVideoClient;
  readiness: Readiness;
  metrics?: RelayMetrics;
  lifecycle?: Lifecycle;
  /** Where the upload page's files are (RELAY_DEMO_PAGE). */
  publicDir?: string;
  /** UPLOAD_MEMORY_BUDGET, shared by every route; built from the config when not given. */
  memoryBudget?: MemoryBudget;
  /** Resumable uploads' sessions and locks; in memory when not given. */
  resumable?: { sessions: SessionStore; locker: UploadLocker };
  /** Consumers of every upload's outcome, besides the built-in log line and metrics. */
  outcomeSinks?: OutcomeSink[];
}

const PUBLIC_DIR = join(__dirname, '..', 'public');
const TUS_BROWSER_BUNDLE = join(
  dirname(require.resolve('tus-js-client/package.json')),
  'dist',
  'tus.min.js',
);

/** Builds the relay from explicit parts: no environment, no globals, so tests can build many. */
export function createApp(deps: AppDeps): express.Express {
  const { config, logger, apivideo } = deps;
  const metrics = deps.metrics ?? new RelayMetrics();
  const lifecycle = deps.lifecycle ?? new Lifecycle();
  const memoryBudget = deps.memoryBudget ?? new MemoryBudget(config.upload.memoryBudget);
  metrics.watchBudget(memoryBudget);
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('trust proxy', config.http.trustProxy);
  app.use(requestLogger(logger));
  app.use(helmet());
  app.use(queryLimit);
  if (config.http.corsOrigins.length > 0) app.use(corsFor(config.http.corsOrigins));
  app.get('/openapi.json', (_req, res) => void res.json(openapi));
  if (config.demoPage) {
    app.use(express.static(deps.publicDir ?? PUBLIC_DIR, { index: 'index.html', maxAge: '1h' }));
    // The page's resumable mode uses tus-js-client's browser build, served from here (no CDN).
    app.get('/vendor/tus.min.js', (_req, res) =>
      res.sendFile(TUS_BROWSER_BUNDLE, { maxAge: '1d' }),
    );
  }
  // Resumable uploads need their session store: without it the relay is not ready.
  const storeReady = () => deps.resumable?.sessions.isReady() ?? true;
  app.use(
    healthRoutes({
      isReady: () => !lifecycle.draining && deps.readiness.isReady() && storeReady(),
    }),
  );
  app.get('/metrics', metricsAuth(config.auth.metricsToken), async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  const authenticate = clientAuth(config.auth);
  const admit = uploadSlots(config.limits, lifecycle);
  const observer = metricsObserver(metrics);
  const engine = new UploadEngine({
    client: apivideo,
    settings: config.upload,
    budget: memoryBudget,
    observer,
    sinks: [new OutcomeRecorder(metrics, logger), ...(deps.outcomeSinks ?? [])],
    logger,
  });
  const guards = { lifecycle, metrics, requestTimeoutMs: config.upload.requestTimeoutMs };
  app.post(
    '/v1/videos',
    authenticate,
    admit,
    uploadRoute({
      ...guards,
      engine,
      formLimits: { fields: config.limits.maxFields, fieldSize: config.limits.maxFieldSize },
    }),
  );
  app.get('/v1/videos/:videoId', authenticate, getVideoRoute(apivideo));
  const sessions = deps.resumable?.sessions ?? new MemorySessionStore();
  const resumable = resumableRoutes({
    ...guards,
    engine,
    sessions,
    locker: deps.resumable?.locker ?? new MemoryLocker(),
    observer,
    logger,
    authenticate,
    admit,
    ttlMs: config.resumable.sessionTtlMs,
    maxSessionsPerClient: config.resumable.maxSessionsPerClient,
    maxStoredBytes: config.resumable.maxStoredBytes,
    metadataLimits: {
      maxEntries: config.limits.maxFields,
      maxValueBytes: config.limits.maxFieldSize,
    },
  });
  app.use(resumable.router);
  app.locals.resumable = resumable;
  app.locals.memoryBudget = memoryBudget;
  app.use(routeNotFound);
  app.use(problemHandler(logger));
  return app;
}

function requestLogger(logger: Logger) {
  return pinoHttp({
    logger,
    genReqId: requestId,
    // Probes every few seconds would drown the upload lines.
    autoLogging: { ignore: (req) => req.url === '/healthz' || req.url === '/readyz' },
    // Headers only at debug: they are noise at info, and redaction covers their credentials.
    serializers: {
      req: (req: SerializedRequest) => ({
        id: req.id,
        method: req.method,
        url: req.url,
        // Behind a load balancer, TRUST_PROXY makes this the client's address, not the balancer's.
        clientIp: (req.raw as express.Request).ip,
        ...(logger.isLevelEnabled('debug') ? { headers: req.headers } : {}),
      }),
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
    },
  });
}

function corsFor(origins: string[]) {
  return cors({
    origin: origins.includes('*') ? '*' : origins,
    methods: ['GET', 'POST', 'HEAD', 'PATCH', 'DELETE', 'OPTIONS'],
    allowedHeaders: ['Authorization', 'Content-Type', 'X-Request-Id', ...TUS_REQUEST_HEADERS],
    exposedHeaders: ['Location', 'X-Request-Id', ...TUS_RESPONSE_HEADERS],
    maxAge: 600,
  });
}

/** What a browser's tus client sends and must read across origins. */
const TUS_REQUEST_HEADERS = [
  'Tus-Resumable',
  'Upload-Length',
  'Upload-Offset',
  'Upload-Metadata',
  'Upload-Defer-Length',
  'X-HTTP-Method-Override',
];
const TUS_RESPONSE_HEADERS = [
  'Tus-Resumable',
  'Tus-Version',
  'Tus-Extension',
  'Tus-Max-Size',
  'Upload-Offset',
  'Upload-Length',
  'Upload-Metadata',
  'Upload-Expires',
  'Upload-Video-Id',
];
