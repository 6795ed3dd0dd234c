import { once } from 'node:events';
import {
  createServer,
  type IncomingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface ReceivedWebhook {
  headers: IncomingHttpHeaders;
  body: string;
  /** The parsed payload when `standardwebhooks` verified the signature; undefined otherwise. */
  payload: { type: string; timestamp: string; data: Record<string, unknown> } | undefined;
  verifyError: string | undefined;
  at: number;
}

/** How the receiver answers one request: a status (with headers), hanging, or dropping the socket. */
export type Answer =
  number | { status: number; headers?: Record<string, string> } | 'hang' | 'drop';

/**
 * A real webhook receiver: verifies every request with the `standardwebhooks` package, answers
 * from a script (then 204), and lets tests wait for the n-th request.
 */
export class WebhookReceiver {
  readonly received: ReceivedWebhook[] = [];
  private readonly script: Answer[] = [];
  private fallback: Answer = 204;
  private readonly waiters: Array<{ n: number; resolve: () => void }> = [];
  private readonly hanging = new Set<ServerResponse>();
  url = '';

  private constructor(
    private readonly server: Server,
    secret: string,
  ) {
    const verifier = new Webhook(secret);
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        let payload: ReceivedWebhook['payload'];
        let verifyError: string | undefined;
        try {
          payload = verifier.verify(body, req.headers as Record<string, string>) as typeof payload;
        } catch (err) {
          verifyError = (err as Error).message;
        }
        this.received.push({ headers: req.headers, body, payload, verifyError, at: Date.now() });
        const answer = this.script.shift() ?? this.fallback;
        if (answer === 'drop') req.socket.destroy();
        else if (answer === 'hang') this.hanging.add(res);
        else {
          const { status, headers } = typeof answer === 'number' ? { status: answer } : answer;
          res.writeHead(verifyError ? 401 : status, headers).end();
        }
        for (const w of [...this.waiters])
          if (this.received.length >= w.n) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve();
          }
      });
    });
  }

  static async start(secret: string): Promise<WebhookReceiver> {
    const server = createServer();
    const receiver = new WebhookReceiver(server, secret);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
    return receiver;
  }

  /** The next requests get these answers, in order; after them, `fallback`. */
  answer(...answers: Answer[]): this {
    this.script.push(...answers);
    return this;
  }

  answerAlways(answer: Answer): this {
    this.fallback = answer;
    return this;
  }

  /** Resolves once `n` requests in all have arrived. */
  async waitFor(n: number, timeoutMs = 15_000): Promise<void> {
    if (this.received.length >= n) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.waiters.push({ n, resolve })),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(`receiver: ${this.received.length} of ${n} requests after ${timeoutMs} ms`),
            ),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  }

  async close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
