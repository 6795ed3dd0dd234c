import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { RelayError, toProblem } from './errors';
import type { AddressInfo } from 'node:net';
import type { RequestListener } from 'node:http';
import type { Config } from './config';
import { STREAM_HIGH_WATER_MARK } from './upload/stream-buffers';

/**
 * Node's default requestTimeout (300 s) would cut a 1 GiB upload over a slow mobile link: it is
 * off here, and the upload route enforces UPLOAD_REQUEST_TIMEOUT_MS itself (with a problem answer
 * and a clean-up). Headers stay on a short leash against slowloris.
 */
export function createHttpServer(
  app: RequestListener,
  config: Pick<Config, 'headersTimeoutMs'>,
): Server {
  const server = createServer(
    {
      requestTimeout: 0,
      // Requests and responses buffer 16 KiB whatever Node's default (stream-buffers.ts).
      highWaterMark: STREAM_HIGH_WATER_MARK,
      headersTimeout: config.headersTimeoutMs,
      // Node checks header deadlines on this tick (30 s by default), which would stretch the guard.
      connectionsCheckingInterval: Math.min(config.headersTimeoutMs, 5_000),
      keepAliveTimeout: 5_000,
    },
    app,
  );
  // Expect: 100-continue is answered only once the upload route means to read the body, so a
  // client refused on its headers (401, 413, 429, 503) never sends it.
  server.on('checkContinue', (req, res) => app(req, res));
  // Requests Node's parser refuses never reach the app: answer them in the relay's format too.
  server.on('clientError', answerClientError);
  return server;
}

export async function listen(server: Server, port: number, host: string): Promise<string> {
  server.listen(port, host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${shownHost}:${address.port}`;
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
};

/**
 * What Node's HTTP parser refused (headers over its limit, a malformed Content-Length, headers
 * that took too long), answered as problem+json with a request id instead of Node's bare line.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
  const error =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new RelayError('headers_too_large', 'The request headers are larger than the relay takes.')
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new RelayError('headers_timeout', 'The request headers did not arrive in time.')
        : new RelayError('invalid_request', 'The request could not be read.');
  const id = randomUUID();
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
