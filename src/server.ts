import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RequestListener } from 'node:http';
import type { Config } from './config';

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
  return server;
}

export async function listen(server: Server, port: number, host: string): Promise<string> {
  server.listen(port, host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${shownHost}:${address.port}`;
}
