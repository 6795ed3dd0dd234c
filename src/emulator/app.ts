import { once, setMaxListeners } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import busboy from 'busboy';
import express, { type NextFunction, type Request, type Response } from 'express';
import { FaultPlan, type FaultRule, type RequestKind } from './faults';
import { PartGate } from './part-gate';
import { EmulatorProblem, badRequest } from './problems';
import { MAX_PART, MAX_WHOLE, parseContentRange, type SourcePiece } from './source-assembly';
import { TokenStore } from './tokens';
import { VideoStore, statusObject, videoObject, type VideoInput } from './videos';

export interface EmulatorOptions {
  apiKey: string;
  tokenTtlSeconds?: number;
}

/** What tests read to see how the relay behaved towards api.video. */
export class EmulatorStats {
  partsInFlight = 0;
  maxPartsInFlight = 0;
  partRequests = 0;
  requests = 0;
  /** Each part request as it began: which video, its Content-Range, how many others were in flight. */
  partLog: Array<{ videoId: string; contentRange: string | null; othersInFlight: number }> = [];

  reset(): void {
    Object.assign(this, {
      partsInFlight: 0,
      maxPartsInFlight: 0,
      partRequests: 0,
      requests: 0,
      partLog: [],
    });
  }
}

/** One request as it reached the emulator: the method and the raw path, as api.video would see it. */
export interface RequestRecord {
  method: string;
  url: string;
}

/** The newest requests are kept, so a long-running emulator does not grow without bound. */
const REQUEST_LOG_SIZE = 10_000;

export interface Emulator {
  app: express.Express;
  /** Every request but the control routes', oldest first (GET /_emulator/requests). */
  requestLog: RequestRecord[];
  videos: VideoStore;
  faults: FaultPlan;
  tokens: TokenStore;
  stats: EmulatorStats;
  /** Holds parts until a test releases them (tests in this process only). */
  gate: PartGate;
  /** Aborted on close: ends the waits of requests in progress (fault delays, held parts). */
  closing: AbortController;
}

export interface RunningEmulator extends Emulator {
  url: string;
  server: Server;
  close(): Promise<void>;
}

const RATE_LIMIT = 1000;

export function createEmulator(options: EmulatorOptions): Emulator {
  const emulator: Emulator = {
    app: express(),
    videos: new VideoStore(),
    faults: new FaultPlan(),
    tokens: new TokenStore(options.tokenTtlSeconds ?? 3600),
    stats: new EmulatorStats(),
    requestLog: [],
    gate: new PartGate(),
    closing: new AbortController(),
  };
  // Every delayed or held part waits on it: many at once is the emulator working, not a leak.
  setMaxListeners(0, emulator.closing.signal);
  const { app } = emulator;
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use((req, res, next) => {
    if (!req.url.startsWith('/_emulator/')) {
      emulator.requestLog.push({ method: req.method, url: req.url });
      if (emulator.requestLog.length > REQUEST_LOG_SIZE) emulator.requestLog.shift();
    }
    emulator.stats.requests += 1;
    res.setHeader('X-RateLimit-Limit', String(RATE_LIMIT));
    res.setHeader(
      'X-RateLimit-Remaining',
      String(Math.max(0, RATE_LIMIT - emulator.stats.requests)),
    );
    next();
  });
  app.use('/_emulator', controlRoutes(emulator));
  app.use('/auth', authRoutes(emulator, options.apiKey));
  app.use(requireCredentials(emulator, options.apiKey));
  app.use(apiRoutes(emulator));
  app.use((_req, _res, next) => next(new EmulatorProblem(404, 'resource-not-found', 'Not found')));
  app.use(renderProblem);
  return emulator;
}

export async function startEmulator(
  options: EmulatorOptions & { port?: number; host?: string; tls?: { key: string; cert: string } },
): Promise<RunningEmulator> {
  const emulator = createEmulator(options);
  // Over HTTPS when given a certificate: tests stand it behind a TLS-inspecting proxy or gateway.
  const server = options.tls
    ? createHttpsServer({ ...options.tls, requestTimeout: 0 }, emulator.app)
    : createServer({ requestTimeout: 0 }, emulator.app);
  server.listen(options.port ?? 0, options.host ?? '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const host =
    options.host && options.host !== '0.0.0.0' && options.host !== '::'
      ? options.host
      : '127.0.0.1';
  return {
    ...emulator,
    url: `${options.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`,
    server,
    close: async () => {
      emulator.closing.abort();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function controlRoutes(emulator: Emulator): express.Router {
  const router = express.Router();
  router.use(express.json());
  router.get('/videos', (_req, res) => {
    send(res, 200, emulator.videos.all().map(inspection));
  });
  router.get('/videos/:id', (req, res, next) => {
    const record = emulator.videos.inspect(String(req.params.id));
    if (!record) return next(new EmulatorProblem(404, 'resource-not-found', 'Unknown video'));
    send(res, 200, inspection(record));
  });
  router.post('/faults', (req, res) => {
    emulator.faults.add(req.body as FaultRule);
    send(res, 201, { ok: true });
  });
  router.delete('/faults', (_req, res) => {
    emulator.faults.clear();
    res.status(204).end();
  });
  router.get('/stats', (_req, res) => send(res, 200, emulator.stats));
  router.get('/requests', (_req, res) => send(res, 200, emulator.requestLog));
  router.post('/reset', (_req, res) => {
    emulator.faults.clear();
    emulator.stats.reset();
    emulator.videos.clear();
    emulator.requestLog.length = 0;
    res.status(204).end();
  });
  router.post('/tokens/expire', (req, res) => {
    const ttl = (req.body as { ttlSeconds?: number } | undefined)?.ttlSeconds;
    if (typeof ttl === 'number') emulator.tokens.setTtl(ttl);
    emulator.tokens.expireAll();
    res.status(204).end();
  });
  return router;
}

function inspection(record: ReturnType<VideoStore['inspect']> & object) {
  return {
    videoId: record.videoId,
    deleted: record.deleted,
    input: record.input,
    ...record.assembly.summary(),
  };
}

function authRoutes(emulator: Emulator, apiKey: string): express.Router {
  const router = express.Router();
  router.use(
    withFault(emulator, () => ({ target: 'auth' })),
    express.json(),
  );
  router.post('/api-key', (req, res, next) => {
    if ((req.body as { apiKey?: unknown })?.apiKey !== apiKey) {
      return next(
        badRequest('authentication-invalid-user-credentials', 'The API key is invalid.', 'apiKey'),
      );
    }
    send(res, 200, emulator.tokens.issue());
  });
  router.post('/refresh', (req, res, next) => {
    const pair = emulator.tokens.renew(
      String((req.body as { refreshToken?: unknown })?.refreshToken),
    );
    if (!pair)
      return next(
        badRequest('authentication-invalid-refresh-token', 'The refresh token is invalid.'),
      );
    send(res, 200, pair);
  });
  return router;
}

function requireCredentials(emulator: Emulator, apiKey: string) {
  const basic = 'Basic ' + Buffer.from(`${apiKey}:`).toString('base64');
  return (req: Request, _res: Response, next: NextFunction) => {
    const header = req.headers.authorization ?? '';
    const bearer = /^Bearer (.+)$/.exec(header)?.[1];
    if (header === basic || (bearer && emulator.tokens.isValid(bearer))) return next();
    next(new EmulatorProblem(401, 'authentication-required', 'Unauthorized request.'));
  };
}

function apiRoutes(emulator: Emulator): express.Router {
  const router = express.Router();
  const { videos } = emulator;
  const findVideo = (req: Request) => {
    const record = videos.get(String(req.params.id));
    if (!record)
      throw new EmulatorProblem(
        404,
        'resource-not-found',
        'The requested resource was not found.',
        'videoId',
      );
    return record;
  };
  router.post(
    '/videos',
    withFault(emulator, () => ({ target: 'create' })),
    express.json(),
    (req, res) => {
      const record = videos.create(validateVideoInput(req.body));
      send(res, 201, videoObject(record));
    },
  );
  router.get(
    '/videos',
    withFault(emulator, () => ({ target: 'list' })),
    (req, res) => {
      const live = videos.live();
      const pageSize = Math.min(100, Math.max(1, Number(req.query.pageSize) || 25));
      send(res, 200, {
        data: live.slice(0, pageSize).map(videoObject),
        pagination: {
          currentPage: 1,
          pageSize,
          pagesTotal: Math.ceil(live.length / pageSize),
          itemsTotal: live.length,
        },
      });
    },
  );
  router.get(
    '/videos/:id',
    withFault(emulator, () => ({ target: 'get' })),
    (req, res) => send(res, 200, videoObject(findVideo(req))),
  );
  router.get(
    '/videos/:id/status',
    withFault(emulator, () => ({ target: 'status' })),
    (req, res) => {
      send(res, 200, statusObject(findVideo(req)));
    },
  );
  router.delete(
    '/videos/:id',
    withFault(emulator, () => ({ target: 'delete' })),
    (req, res) => {
      findVideo(req).deleted = true;
      res.status(204).end();
    },
  );
  router.post(
    '/videos/:id/source',
    countPartInFlight(emulator),
    withFault(emulator, partKind),
    async (req, res) => {
      const piece = parseContentRange(req.headers['content-range']);
      const record = findVideo(req);
      const file = await readSingleFile(req, piece.kind === 'whole' ? MAX_WHOLE : MAX_PART);
      await sleep(Number(res.locals.delayMs ?? 0), undefined, { signal: emulator.closing.signal });
      const gone = AbortSignal.any([emulator.closing.signal, closedBeforeAnswer(res)]);
      await emulator.gate.pass(req.headers['content-range'] ?? null, gone);
      if (gone.aborted) return;
      record.assembly.add(piece, file);
      if (res.locals.loseAnswer === true) return void req.socket.destroy();
      send(res, 201, videoObject(record));
    },
  );
  return router;
}

function partKind(req: Request): RequestKind {
  try {
    const piece = parseContentRange(req.headers['content-range']);
    return { target: 'part', part: piece.kind === 'part' ? piece.number : undefined };
  } catch {
    return { target: 'part' };
  }
}

function countPartInFlight(emulator: Emulator) {
  return (req: Request, res: Response, next: NextFunction) => {
    const { stats } = emulator;
    const contentRange = req.headers['content-range'] ?? null;
    stats.partLog.push({
      videoId: String(req.params.id),
      contentRange,
      othersInFlight: stats.partsInFlight,
    });
    stats.partRequests += 1;
    stats.partsInFlight += 1;
    stats.maxPartsInFlight = Math.max(stats.maxPartsInFlight, stats.partsInFlight);
    res.once('close', () => (stats.partsInFlight -= 1));
    next();
  };
}

/**
 * Applies the first matching fault rule: drop, answer a status, or delay. A part's delay is left to
 * its handler (in res.locals), which waits after reading the body, as a slow upstream would.
 */
function withFault(emulator: Emulator, kindOf: (req: Request) => RequestKind) {
  return async (req: Request, res: Response, next: NextFunction) => {
    const kind = kindOf(req);
    const rule = emulator.faults.take(kind);
    if (!rule) return next();
    if (rule.drop) return dropConnection(req);
    if (rule.status === undefined) {
      if (kind.target === 'part') {
        res.locals.delayMs = rule.delayMs ?? 0;
        res.locals.loseAnswer = rule.loseAnswer === true;
      } else await sleep(rule.delayMs ?? 0, undefined, { signal: emulator.closing.signal });
      return next();
    }
    req.resume();
    if (!req.complete) await once(req, 'end');
    await sleep(rule.delayMs ?? 0, undefined, { signal: emulator.closing.signal });
    if (rule.retryAfter !== undefined) {
      res.setHeader('Retry-After', String(rule.retryAfter));
      res.setHeader('X-RateLimit-Retry-After', String(rule.retryAfter));
      res.setHeader('X-RateLimit-Remaining', '0');
    }
    const name = rule.status === 429 ? 'too-many-requests' : 'server-error';
    next(
      new EmulatorProblem(
        rule.status,
        name,
        rule.status === 429 ? 'Too many requests.' : 'Injected fault.',
      ),
    );
  };
}

/** Aborts when the response's connection closes before it was answered. */
function closedBeforeAnswer(res: Response): AbortSignal {
  const closed = new AbortController();
  res.once('close', () => res.writableFinished || closed.abort());
  return closed.signal;
}

function dropConnection(req: IncomingMessage): void {
  const hasBody =
    Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'];
  if (!hasBody) return void req.socket.destroy();
  req.once('data', () => req.socket.destroy());
}

/** Reads the one file of a multipart body into memory (a part is at most 128 MiB). */
async function readSingleFile(req: Request, maxBytes: number): Promise<Buffer> {
  if (!String(req.headers['content-type']).startsWith('multipart/form-data')) {
    throw badRequest(
      'uploaded-file-no-file',
      'The request must be multipart/form-data with one file.',
      'file',
    );
  }
  const parser = busboy({ headers: req.headers, limits: { fileSize: maxBytes + 1 } });
  const files: Buffer[][] = [];
  let tooLarge = false;
  parser.on('file', (_name, stream) => {
    const chunks: Buffer[] = [];
    files.push(chunks);
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('limit', () => (tooLarge = true));
  });
  const done = new Promise<void>((resolve, reject) => {
    parser.on('close', resolve);
    parser.on('error', (err: Error) =>
      reject(badRequest('invalid-body', `Malformed multipart body: ${err.message}`)),
    );
    req.on('error', reject);
  });
  req.pipe(parser);
  await done;
  if (files.length === 0)
    throw badRequest('uploaded-file-no-file', 'No file was uploaded.', 'file');
  if (files.length > 1)
    throw badRequest(
      'uploaded-file-multiple-files',
      'Only one file may be uploaded per request.',
      'file',
    );
  if (tooLarge)
    throw badRequest('uploaded-part-too-large', `A part is limited to ${maxBytes} bytes.`, 'file');
  return Buffer.concat(files[0]!);
}

function validateVideoInput(body: unknown): VideoInput {
  const input = (body ?? {}) as Record<string, unknown>;
  if (typeof input.title !== 'string' || input.title === '') {
    throw badRequest('attribute-required', 'This attribute is required.', 'title');
  }
  if (
    input.tags !== undefined &&
    !(Array.isArray(input.tags) && input.tags.every((t) => typeof t === 'string'))
  ) {
    throw badRequest('invalid-attribute', 'This attribute must be an array of strings.', 'tags');
  }
  const metadata = input.metadata;
  if (
    metadata !== undefined &&
    !(
      Array.isArray(metadata) &&
      (metadata as unknown[]).every(
        (m) =>
          typeof (m as { key?: unknown } | null)?.key === 'string' &&
          typeof (m as { value?: unknown } | null)?.value === 'string',
      )
    )
  ) {
    throw badRequest(
      'invalid-attribute',
      'This attribute must be an array of {key, value}.',
      'metadata',
    );
  }
  return input as unknown as VideoInput;
}

function renderProblem(err: unknown, _req: Request, res: Response, _next: NextFunction): void {
  const problem =
    err instanceof EmulatorProblem
      ? err
      : (err as { type?: string })?.type === 'entity.parse.failed'
        ? badRequest('invalid-body', 'The body is not valid JSON.')
        : new EmulatorProblem(500, 'server-error', 'Internal error.');
  if (res.headersSent) return void res.destroy();
  send(res, problem.status, problem.toJSON(), 'application/problem+json');
}

/** api.video sends its media types bare: the official client refuses `; charset=utf-8`. */
function send(res: Response, status: number, body: unknown, type = 'application/json'): void {
  const text = JSON.stringify(body);
  res.status(status).setHeader('Content-Type', type);
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}

export type { FaultRule, SourcePiece };
