import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import cors from 'cors';
import express from 'express';
import helmet from 'helmet';
import type { Logger, SerializedRequest } from 'pino';
import { pinoHttp } from 'pino-http';
import type { ApiVideoClient } from './apivideo/client';
import type { Config } from './kernel/config';
import { clientAuth, metricsAuth } from './http/client-auth';
import { bodyDeadline } from './http/body-deadline';
import { healthRoutes, type Readiness } from './http/health';
import { loggableHeaders, loggableUrl } from './kernel/loggable';
import { problemHandler, routeNotFound } from './http/problem';
import { queryLimit } from './http/query-limit';
import { requestId } from './http/request-id';
import { uploadRoute } from './routes/videos/upload';
import { uploadSlots } from './http/upload-slots';
import { getVideoRoute } from './routes/videos/get-video';
import openapi from './http/openapi.json';
import type { Lifecycle } from './kernel/lifecycle';
import type { RelayMetrics } from './kernel/metrics';
import { resumableRoutes } from './routes/tus/routes';
import type { UploadSessions } from './sessions/upload-sessions';
import type { UploadObserver } from './engine/contract';
import type { UploadEngine } from './engine/engine';
import type { MemoryBudget } from './engine/memory-budget';
import { uploadTokenAuth, withUploadTokens } from './upload-tokens/auth';
import { uploadTokenRoutes } from './routes/upload-tokens/routes';
import { tokenUploadRoutes } from './routes/apivideo-upload/routes';
import type { UploadTokens } from './upload-tokens/tokens';
import { webhooksRoutes } from './routes/webhooks/routes';
import type { WebhookSink } from './webhooks/sink';

export interface AppDeps {
  config: Config;
  logger: Logger;
  apivideo: ApiVideoClient;
  /** /readyz. */
  readiness: Readiness;
  metrics: RelayMetrics;
  lifecycle: Lifecycle;
  /** UPLOAD_MEMORY_BUDGET, shared by every route. */
  memoryBudget: MemoryBudget;
  engine: UploadEngine;
  observer: UploadObserver;
  /** Resumable and chunked uploads' sessions, locks and sweep. */
  sessions: UploadSessions;
  uploadTokens: UploadTokens;
  /** Set when RELAY_WEBHOOK_URL is: `POST /v1/webhooks/test` sends through it. */
  webhooks?: WebhookSink;
  /** What GET /v1/info tells about the upstream; from config.useEmbeddedEmulator when not given. */
  upstream?: 'emulator' | 'api.video';
  /** Where the upload page's files are (RELAY_DEMO_PAGE). */
  publicDir?: string;
}

const PUBLIC_DIR = join(__dirname, '..', 'public');
// Made by `npm run build` (scripts/build-assets.mjs): dist/ whether this file runs from src/ or dist/.
const BUILT_ASSETS = join(__dirname, '..', 'dist');
const TUS_BROWSER_BUNDLE = join(BUILT_ASSETS, 'vendor', 'tus.min.js');
const ERRORS_PAGE = join(BUILT_ASSETS, 'docs', 'errors.html');

/** The standalone emulator's default key (npm run emulator, docker-compose): never an api.video key. */
const STANDALONE_EMULATOR_KEY = 'emulator-key';

/** Routes and middleware over the relay's parts (src/relay.ts builds them): no state of its own. */
export function createApp(deps: AppDeps): express.Express {
  const { config, logger, apivideo, metrics, lifecycle, engine, sessions, uploadTokens } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('trust proxy', config.http.trustProxy);
  app.use(requestLogger(logger));
  app.use(securityHeaders());
  app.use(queryLimit);
  app.use(bodyDeadline(config.headersTimeoutMs));
  if (config.http.corsOrigins.length > 0) app.use(corsFor(config.http.corsOrigins));
  app.get('/openapi.json', (_req, res) => void res.json(openapi));
  // Every problem's `type` points here, so it is served whatever RELAY_DEMO_PAGE says.
  app.get('/docs/errors', (_req, res) => res.sendFile(ERRORS_PAGE, { maxAge: '1h' }));
  // Lets the upload page warn that uploads go to the emulator; never the key or the upstream URL.
  const upstream =
    deps.upstream ??
    (config.useEmbeddedEmulator || config.apivideo.apiKey === STANDALONE_EMULATOR_KEY
      ? 'emulator'
      : 'api.video');
  app.get('/v1/info', (_req, res) => void res.json({ upstream }));
  if (config.demoPage) {
    app.use(express.static(deps.publicDir ?? PUBLIC_DIR, { index: 'index.html', maxAge: '1h' }));
    // The page's resumable mode uses tus-js-client's browser build, served from here (no CDN).
    app.get('/vendor/tus.min.js', (_req, res) =>
      res.sendFile(TUS_BROWSER_BUNDLE, { maxAge: '1d' }),
    );
  }
  app.use(healthRoutes(deps.readiness));
  app.get('/metrics', metricsAuth(config.auth.metricsToken), async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  const authenticate = clientAuth(config.auth);
  const admit = uploadSlots(config.limits, lifecycle, deps.memoryBudget);
  const guards = { lifecycle, metrics, requestTimeoutMs: config.upload.requestTimeoutMs };
  app.use(uploadTokenRoutes(uploadTokens, authenticate));
  app.post(
    '/v1/videos',
    uploadTokenAuth(uploadTokens, () => 'start'),
    authenticate,
    admit,
    uploadRoute({
      ...guards,
      engine,
      formLimits: { fields: config.limits.maxFields, fieldSize: config.limits.maxFieldSize },
    }),
  );
  app.get('/v1/videos/:videoId', authenticate, getVideoRoute(apivideo));
  app.use(
    resumableRoutes({
      ...guards,
      engine,
      sessions,
      observer: deps.observer,
      logger,
      // tus creation may start an upload (the route counts the use); every later request continues it.
      authenticate: withUploadTokens(
        uploadTokens,
        (req) => (req.method === 'POST' ? 'start' : 'continue'),
        authenticate,
      ),
      admit,
      ttlMs: config.resumable.sessionTtlMs,
      maxSessionsPerClient: config.resumable.maxSessionsPerClient,
      maxStoredBytes: config.resumable.maxStoredBytes,
      maxStoredBytesPerClient: config.resumable.maxStoredBytesPerClient,
      metadataLimits: {
        maxEntries: config.limits.maxFields,
        maxValueBytes: config.limits.maxFieldSize,
      },
    }),
  );
  app.use(webhooksRoutes({ sink: deps.webhooks, authenticate }));
  app.use(
    tokenUploadRoutes({
      ...guards,
      tokens: uploadTokens,
      sessions,
      engine,
      observer: deps.observer,
      admit,
      formLimits: { fields: config.limits.maxFields, fieldSize: config.limits.maxFieldSize },
      logger,
    }),
  );
  app.use(routeNotFound);
  app.use(problemHandler(logger));
  return app;
}

/**
 * HSTS and `upgrade-insecure-requests` only over TLS (req.secure, which honours TRUST_PROXY): sent
 * over plain HTTP to an address other than localhost, they make the browser fetch the page's CSS
 * and JS over https, which is not there, and the page is dead.
 */
function securityHeaders(): express.RequestHandler {
  const overTls = helmet();
  const overPlainHttp = helmet({
    strictTransportSecurity: false,
    contentSecurityPolicy: { directives: { upgradeInsecureRequests: null } },
  });
  return (req, res, next) => (req.secure ? overTls : overPlainHttp)(req, res, next);
}

function requestLogger(logger: Logger) {
  return pinoHttp({
    logger,
    genReqId: requestId,
    // Probes every few seconds would drown the upload lines.
    autoLogging: { ignore: (req) => req.url === '/healthz' || req.url === '/readyz' },
    // Headers only at debug: they are noise at info. Both the URL and the headers are shown as
    // loggable.ts judges them (decoded, so no spelling of a token slips through).
    serializers: {
      req: (req: SerializedRequest) => ({
        id: req.id,
        method: req.method,
        url: loggableUrl(req.url),
        // Behind a load balancer, TRUST_PROXY makes this the client's address, not the balancer's.
        clientIp: (req.raw as express.Request).ip,
        ...(logger.isLevelEnabled('debug') ? { headers: loggableHeaders(req.headers) } : {}),
      }),
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
    },
    customLogLevel: (_req, res, err) => requestOutcome(res, err),
    customSuccessMessage: (req, res) => {
      const code = problemCodeOf(res);
      if (code) return `request refused: ${code}`;
      return !req.readableAborted && res.writableEnded ? 'request completed' : 'request aborted';
    },
    customErrorMessage: (_req, res) =>
      requestOutcome(res) === 'warn'
        ? `request failed: ${problemCodeOf(res) ?? res.statusCode}`
        : 'request errored',
    customSuccessObject: (_req, res, value: Record<string, unknown>) => withCode(res, value),
    // An expected failure (api.video down, draining) has a code and a detail, not a stack: pino-http
    // would otherwise log an Error it makes up for every 5xx, stack trace included.
    customErrorObject: (_req, res, _err, value: Record<string, unknown>) => {
      if (requestOutcome(res) === 'error') return value;
      const { err: _dropped, ...rest } = value;
      return withCode(res, rest);
    },
  });
}

function problemCodeOf(res: ServerResponse): string | undefined {
  return (res as express.Response).locals?.problemCode as string | undefined;
}

function withCode(res: ServerResponse, value: Record<string, unknown>): Record<string, unknown> {
  const code = problemCodeOf(res);
  return code ? { ...value, code } : value;
}

/** 4xx and the relay's own 5xx answers (upstream trouble, admission) are expected: warn. */
function requestOutcome(res: ServerResponse, err?: Error): 'info' | 'warn' | 'error' {
  const code = problemCodeOf(res);
  if (code === 'internal_error') return 'error';
  if (code) return 'warn';
  if (err || res.statusCode === 500) return 'error';
  return res.statusCode >= 400 ? 'warn' : 'info';
}

function corsFor(origins: string[]) {
  return cors({
    origin: origins.includes('*') ? '*' : origins,
    methods: ['GET', 'POST', 'HEAD', 'PATCH', 'DELETE', 'OPTIONS'],
    allowedHeaders: [
      'Authorization',
      'Content-Type',
      'X-Request-Id',
      ...TUS_REQUEST_HEADERS,
      ...APIVIDEO_UPLOADER_HEADERS,
    ],
    exposedHeaders: ['Location', 'X-Request-Id', ...TUS_RESPONSE_HEADERS],
    maxAge: 600,
  });
}

/** What api.video's browser uploader sends to `POST /upload?token=`. */
const APIVIDEO_UPLOADER_HEADERS = [
  'Content-Range',
  'AV-Origin-Client',
  'AV-Origin-App',
  'AV-Origin-Sdk',
];

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
