import { connect, createServer, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  url: string;
  port: number;
  /** Bytes clients sent through the proxy, and bytes they got back. */
  sent(): number;
  received(): number;
  wasCut(): boolean;
  /** Cuts every connection and refuses new ones until `restore()`. */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy on loopback that counts the bytes in each direction, can cut a connection after
 * some bytes, or cut everything (a network outage) and come back.
 */
export async function tcpProxy(
  targetPort: number,
  options: { cutAfter?: number; scheme?: string } = {},
): Promise<TcpProxy> {
  let sent = 0;
  let received = 0;
  let cut = false;
  let down = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    if (down) return void client.destroy();
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('data', (d: Buffer) => {
      sent += d.length;
      if (options.cutAfter !== undefined && !cut && sent > options.cutAfter) {
        cut = true;
        client.destroy();
        upstream.destroy();
        return;
      }
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      received += d.length;
      client.write(d);
    });
    client.on('close', () => (upstream.destroy(), sockets.delete(client)));
    upstream.on('close', () => (client.destroy(), sockets.delete(upstream)));
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
  }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `${options.scheme ?? 'http'}://127.0.0.1:${port}`,
    port,
    sent: () => sent,
    received: () => received,
    wasCut: () => cut,
    cut: () => {
      down = true;
      for (const s of sockets) s.destroy();
    },
    restore: () => {
      down = false;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface CuttingProxy {
  url: string;
  /** The uploads whose PATCH was cut. */
  cut(): string[];
  close(): Promise<void>;
}

const PATCH_LINE = /PATCH \/v1\/uploads\/([A-Za-z0-9_-]{22}) HTTP/;

/**
 * A proxy in front of the relay that cuts each tus upload's PATCH once, after `cutAfter` bytes of
 * it went through: a mobile network that drops the connection mid-upload, once per upload. Both
 * sides are destroyed, so the relay sees its client leave and the client sees a reset.
 */
export async function patchCuttingProxy(
  targetPort: number,
  cutAfter: number,
): Promise<CuttingProxy> {
  const cutUploads = new Set<string>();
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    let current: { id: string; bytes: number } | undefined;
    client.on('data', (d: Buffer) => {
      // Request lines are ASCII; a body of random bytes matching one is not worth worrying about.
      const line = PATCH_LINE.exec(d.toString('latin1'));
      if (line) current = { id: line[1]!, bytes: 0 };
      if (current && !cutUploads.has(current.id)) {
        current.bytes += d.length;
        if (current.bytes > cutAfter) {
          cutUploads.add(current.id);
          client.destroy();
          upstream.destroy();
          return;
        }
      }
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => client.write(d));
    client.on('close', () => (upstream.destroy(), sockets.delete(client)));
    upstream.on('close', () => (client.destroy(), sockets.delete(upstream)));
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
  }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    cut: () => [...cutUploads],
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A round-robin TCP balancer: each new connection goes to the next backend, and past one that
 * refuses it (a dead instance) to the one after, as a balancer with health checks would.
 */
export async function roundRobin(
  ports: number[],
): Promise<{ url: string; close(): Promise<void> }> {
  let next = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    client.pause();
    sockets.add(client);
    client.on('error', () => undefined);
    client.on('close', () => sockets.delete(client));
    const attempt = (left: number) => {
      const port = ports[next++ % ports.length]!;
      const upstream = connect(port, '127.0.0.1');
      upstream.once('error', () => {
        upstream.destroy();
        if (left > 1 && !client.destroyed) attempt(left - 1);
        else client.destroy();
      });
      upstream.once('connect', () => {
        sockets.add(upstream);
        upstream.on('error', () => undefined);
        client.pipe(upstream);
        upstream.pipe(client);
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => (client.destroy(), sockets.delete(upstream)));
        client.resume();
      });
    };
    attempt(ports.length);
  }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
