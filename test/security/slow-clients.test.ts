/**
 * Sockets a client may not hold for ever: a body trickled a byte at a time to a route that does
 * not stream uploads (a GET with a body, a 401, a token's JSON) is cut once the headers'
 * deadline (HTTP_HEADERS_TIMEOUT_MS) passes. Found by an attack on the running relay: 300 such
 * sockets stayed open, and with them 300 file descriptors.
 */
import { connect, type Socket } from 'node:net';
import type { RunningEmulator } from '../../src/emulator/app';
import { startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';

const TOKEN = 'slow-client-token-0123456789';
let emulator: RunningEmulator;
let relay: TestRelay;
beforeAll(async () => {
  emulator = await startTestEmulator();
  relay = await startTestRelay(emulator, {
    env: { RELAY_API_TOKENS: TOKEN, HTTP_HEADERS_TIMEOUT_MS: '1000', LOG_LEVEL: 'warn' },
  });
});
afterAll(async () => {
  await relay.close();
  await emulator.close();
});

/** Sends the head, then a byte every 100 ms; resolves when the server closes the socket. */
function trickle(head: string, maxMs: number): Promise<{ closedByServer: boolean; ms: number }> {
  const { port } = new URL(relay.url);
  const started = Date.now();
  return new Promise((resolve) => {
    const socket: Socket = connect(Number(port), '127.0.0.1');
    let timer: NodeJS.Timeout | undefined;
    let ended = false;
    const finish = (closedByServer: boolean) => {
      if (ended) return;
      ended = true;
      clearInterval(timer);
      socket.destroy();
      resolve({ closedByServer, ms: Date.now() - started });
    };
    socket.on('error', () => undefined);
    socket.on('close', () => finish(true));
    socket.on('data', () => undefined);
    socket.on('connect', () => {
      socket.write(head);
      timer = setInterval(() => {
        if (Date.now() - started > maxMs) return finish(false);
        socket.write('x');
      }, 100);
    });
  });
}

const head = (method: string, path: string, extra = '') =>
  `${method} ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n${extra}\r\n`;

test.each([
  ['a GET with a body on an open route', head('GET', '/healthz')],
  ['a GET with a body, refused 401', head('GET', '/v1/videos/vi4blUQJFrYWbaG44NChkH27')],
  ['an OPTIONS with a body', head('OPTIONS', '/v1/uploads')],
  [
    'an authenticated token request whose JSON trickles',
    head(
      'POST',
      '/v1/upload-tokens',
      `Authorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\n`,
    ),
  ],
])('%s: the server closes the socket', async (_what, request) => {
  const result = await trickle(request, 15_000);
  expect(result.closedByServer).toBe(true);
  // The deadline is 1 s (the lingering close after an error answer, 5 s): far below the 15 s tried.
  expect(result.ms).toBeLessThan(8_000);
});
