import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { RelayError, toProblem } from '../kernel/errors';
import type { AddressInfo } from 'node:net';
import type { RequestListener } from 'node:http';
import type { Config } from '../kernel/config';
import { STREAM_HIGH_WATER_MARK } from './stream-buffers';
import { acceptableRequestId } from './request-id';

/**
 * Node's default requestTimeout (300 s) would cut a 1 GiB upload over a slow mobile link: it is
 * off here, and the upload route enforces UPLOAD_REQUEST_TIMEOUT_MS itself (with a problem answer
 * and a clean-up). Headers stay on a short leash against slowloris.
 */
export function createHttpServer(
  app: RequestListener,
  config: Pick<Config, 'headersTimeoutMs'>,
): Server {
  const inFlight = new InFlight();
  const handle: RequestListener = (req, res) => {
    inFlight.add(req, res);
    // Node would answer a bare 400 itself; RFC 9112 3.2 asks for the 400, not for that format.
    if (req.httpVersion === '1.1' && req.headers.host === undefined)
      return answerDirectly(
        req,
        res,
        new RelayError('invalid_request', 'An HTTP/1.1 request must carry a Host header.'),
      );
    app(req, res);
  };
  const server = createServer(
    {
      requestTimeout: 0,
      // Requests and responses buffer 16 KiB whatever Node's default (stream-buffers.ts).
      highWaterMark: STREAM_HIGH_WATER_MARK,
      headersTimeout: config.headersTimeoutMs,
      // Node checks header deadlines on this tick (30 s by default), which would stretch the guard.
      connectionsCheckingInterval: Math.min(config.headersTimeoutMs, 5_000),
      keepAliveTimeout: 5_000,
      requireHostHeader: false,
    },
    handle,
  );
  // A client that shuts its side once its request is sent (HTTP/1.0 tools, `nc -N`) is owed its
  // answers: by default Node ends the connection on that FIN, dropping answers not yet written.
  // With this set it marks the last answer in flight to close the connection once written.
  (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  // Expect: 100-continue is answered only once the upload route means to read the body, so a
  // client refused on its headers (401, 413, 429, 503) never sends it. Handled as a 'request'
  // event, which is what OpenTelemetry's http instrumentation traces (large uploads from curl and
  // most clients ask for 100-continue); `handle` is the 'request' listener either way.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) =>
    server.emit('request', req, res),
  );
  // Any other expectation: Node's own answer is a bare 417.
  server.on('checkExpectation', (req, res) => {
    inFlight.add(req, res);
    answerDirectly(
      req,
      res,
      new RelayError('expectation_failed', 'The only expectation the relay meets is 100-continue.'),
    );
  });
  // A proxy request: without a listener Node drops the connection without a word.
  server.on('connect', (req: IncomingMessage, socket: Duplex) =>
    writeAndClose(
      socket,
      new RelayError('route_not_found', 'The relay is not a proxy: there is no CONNECT.'),
      acceptableRequestId(req.headers['x-request-id']) ?? randomUUID(),
    ),
  );
  // Requests Node's parser refuses never reach the app: answer them in the relay's format too.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) =>
    answerClientError(err, socket, inFlight),
  );
  return server;
}

export async function listen(server: Server, port: number, host: string): Promise<string> {
  server.listen(port, host);
  try {
    await once(server, 'listening');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE')
      throw new Error(
        `port ${port} on ${host} is already in use (another relay, or another program): set PORT to a free port, or stop what holds it`,
        { cause: err },
      );
    if (code === 'EACCES')
      throw new Error(`port ${port} needs privileges this process lacks: set PORT above 1023`, {
        cause: err,
      });
    throw err;
  }
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${shownHost}:${address.port}`;
}

/**
 * An address a person can open: a relay listening on every interface (0.0.0.0, ::) is reached
 * at localhost on its own machine.
 */
export function openableUrl(url: string): string {
  return url.replace(/^http:\/\/(0\.0\.0\.0|\[::\])(?=:)/, 'http://localhost');
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  408: 'Request Timeout',
  417: 'Expectation Failed',
  431: 'Request Header Fields Too Large',
};

/**
 * The requests of each connection that are still being answered. Node keeps parsing pipelined
 * requests while earlier ones are answered, so a parser error can arrive with answers in flight,
 * and what to write then depends on them (answerClientError).
 */
export class InFlight {
  private readonly open = new WeakMap<object, Set<Exchange>>();
  private readonly latest = new WeakMap<object, Exchange>();

  add(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket;
    let set = this.open.get(socket);
    if (!set) this.open.set(socket, (set = new Set()));
    const entry = { req, res };
    set.add(entry);
    this.latest.set(socket, entry);
    res.once('close', () => set.delete(entry));
  }

  of(socket: Duplex): Exchange[] {
    return [...(this.open.get(socket) ?? [])].filter((e) => !e.res.writableFinished);
  }

  /** The connection's most recent request, answered or not. */
  last(socket: Duplex): Exchange | undefined {
    return this.latest.get(socket);
  }
}

interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
}

const answered = new WeakSet<Duplex>();

/**
 * What Node's HTTP parser refused (headers over its limit, a malformed Content-Length or chunk,
 * a body cut short, headers that took too long), answered as problem+json with a request id
 * instead of Node's bare line, and never in the middle of another answer:
 * - a request whose body broke while the app had it is answered now, under that request's id (the
 *   one its log line carries), unless its answer has begun, when the connection can only be cut;
 * - a bad request pipelined behind complete ones waits for their answers, so the requests before it
 *   get their own (an upload sent whole before it is not thrown away);
 * - a body left unread after an early answer only closes the connection;
 * - otherwise the refusal is the connection's only answer.
 */
export function answerClientError(
  err: NodeJS.ErrnoException,
  socket: Duplex,
  inFlight?: InFlight,
): void {
  // The parser reports the same error again for every later packet: one answer is enough.
  if (answered.has(socket)) return;
  if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
  answered.add(socket);
  const error =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new RelayError('headers_too_large', 'The request headers are larger than the relay takes.')
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new RelayError('headers_timeout', 'The request headers did not arrive in time.')
        : new RelayError('invalid_request', 'The request could not be read.');
  const pending = inFlight?.of(socket) ?? [];
  const broken = pending.find((e) => !e.req.complete);
  if (broken) {
    if (broken.res.headersSent) return void socket.destroy();
    const id = broken.res.getHeader('x-request-id');
    return writeAndClose(socket, error, typeof id === 'string' ? id : randomUUID());
  }
  if (pending.length === 0) {
    // An early answer (a 401 over an unread body) is already out; the body it left unread is
    // what broke, and a second answer to the same request would only confuse the client.
    const last = inFlight?.last(socket);
    if (last && !last.req.complete && last.res.headersSent) return void socket.destroy();
    return writeAndClose(socket, error, randomUUID());
  }
  let left = pending.length;
  for (const { res } of pending) {
    let counted = false;
    const done = () => {
      if (counted) return;
      counted = true;
      left -= 1;
      if (left > 0) return;
      if (socket.writable) writeAndClose(socket, error, randomUUID());
      else socket.destroy();
    };
    // Ahead of Node's own listener, which ends the connection after the last answer when the
    // client has half-closed: the refusal goes out first.
    res.prependOnceListener('finish', done);
    res.once('close', done);
  }
}

function writeAndClose(socket: Duplex, error: RelayError, id: string): void {
  const body = JSON.stringify(toProblem(error, id));
  socket.end(
    `HTTP/1.1 ${error.status} ${REASONS[error.status] ?? 'Error'}\r\n` +
      'Content-Type: application/problem+json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      `X-Request-Id: ${id}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}

/** A refusal Node would have written itself, in the relay's format, before the app sees it. */
function answerDirectly(req: IncomingMessage, res: ServerResponse, error: RelayError): void {
  const id = acceptableRequestId(req.headers['x-request-id']) ?? randomUUID();
  const body = JSON.stringify(toProblem(error, id));
  res.shouldKeepAlive = false;
  res.writeHead(error.status, {
    'Content-Type': 'application/problem+json',
    'Content-Length': Buffer.byteLength(body),
    'X-Request-Id': id,
    Connection: 'close',
  });
  res.end(body);
}
