import type { Request, Response } from 'express';

/** How long, and how much, an unread body is drained after an early error answer. */
const LINGER = { ms: 5_000, bytes: 32 * 1024 * 1024 };

/**
 * An error answered before the body was read. Closing at once would make many clients (undici,
 * some mobile stacks) lose the answer while they are still sending, so, like nginx's lingering
 * close, drain for a bounded time and amount, then cut the connection.
 */
export function lingerOnUnreadBody(req: Request, res: Response): void {
  if (req.complete || req.method === 'GET' || req.method === 'HEAD') return;
  res.once('finish', () => {
    if (req.complete) return;
    let drained = 0;
    const cut = () => req.socket.destroy();
    const timer = setTimeout(cut, LINGER.ms).unref();
    req.on('data', (chunk: Buffer) => (drained += chunk.length) > LINGER.bytes && cut());
    req.once('close', () => clearTimeout(timer));
    req.resume();
  });
}

/** Lets a client that sent `Expect: 100-continue` start sending, now that we mean to read. */
export function continueIfExpected(req: Request, res: Response): void {
  if (/100-continue/i.test(req.headers.expect ?? '') && !res.headersSent) res.writeContinue();
}
