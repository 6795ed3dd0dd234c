import { connect, type Socket } from 'node:net';
import { request as httpRequest } from 'node:http';
import { once } from 'node:events';

export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** A hand-driven HTTP/1.1 client: for bodies that stall, end early or vanish mid-way. */
export class RawHttp {
  private readonly socket: Socket;
  private received = '';
  readonly closed: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => (this.received += d.toString('latin1')));
    socket.on('error', () => undefined); // the server may cut us off; that is what some tests want
    this.closed = once(socket, 'close').then(() => undefined);
  }

  static async open(baseUrl: string): Promise<RawHttp> {
    const { hostname, port } = new URL(baseUrl);
    const socket = connect(Number(port), hostname);
    await once(socket, 'connect');
    return new RawHttp(socket);
  }

  head(path: string, headers: Record<string, string>): this {
    const lines = [
      `POST ${path} HTTP/1.1`,
      'Host: relay.test',
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ];
    this.socket.write(lines.join('\r\n') + '\r\n\r\n');
    return this;
  }

  /** Writes, waiting for the socket to drain so "sent" means handed to the kernel. */
  async write(data: Buffer | string): Promise<void> {
    if (!this.socket.write(data)) await Promise.race([once(this.socket, 'drain'), this.closed]);
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  get hasAnswer(): boolean {
    return /\r\n\r\n/.test(this.received);
  }

  /** The server closed (or cut) the connection, or we did. */
  get isClosed(): boolean {
    return this.socket.destroyed;
  }

  /** Waits for a full answer (Content-Length framed), or for the socket to close. */
  async answer(timeoutMs = 10_000): Promise<RawAnswer> {
    if (!this.complete() && !this.socket.destroyed) {
      await new Promise<void>((resolve) => {
        const finish = () => {
          clearTimeout(timer);
          this.socket.off('data', check);
          this.socket.off('close', finish);
          resolve();
        };
        // Registered after the constructor's listener, so `received` already holds the chunk.
        const check = () => this.complete() && finish();
        const timer = setTimeout(finish, timeoutMs);
        this.socket.on('data', check);
        this.socket.once('close', finish);
      });
    }
    return parse(this.received);
  }

  private complete(): boolean {
    const end = this.received.indexOf('\r\n\r\n');
    if (end < 0) return false;
    const length = /content-length: (\d+)/i.exec(this.received.slice(0, end))?.[1];
    return length !== undefined && this.received.length >= end + 4 + Number(length);
  }
}

function parse(text: string): RawAnswer {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return { status: 0, headers: {}, body: '' };
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const headers = Object.fromEntries(
    lines.map((l) => [
      l.slice(0, l.indexOf(':')).toLowerCase(),
      l.slice(l.indexOf(':') + 1).trim(),
    ]),
  );
  return { status: Number(statusLine!.split(' ')[1]), headers, body: text.slice(end + 4) };
}

export interface ExactAnswer extends RawAnswer {
  /** The body parsed as JSON, or {} when it is not JSON. */
  json: Record<string, unknown>;
}

/**
 * One request whose path goes on the wire exactly as written: undici, fetch and supertest
 * normalise or re-encode it (`..`, `%5F`), which is what some attacks depend on.
 */
export function exactRequest(
  baseUrl: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: Buffer | string,
): Promise<ExactAnswer> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: hostname, port, method, path, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: Record<string, unknown> = {};
          try {
            json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
          } catch {
            // not JSON: the caller reads `body`
          }
          const flat = Object.fromEntries(
            Object.entries(res.headers).map(([k, v]) => [
              k,
              Array.isArray(v) ? v.join(', ') : (v ?? ''),
            ]),
          );
          resolve({ status: res.statusCode ?? 0, headers: flat, body: text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
