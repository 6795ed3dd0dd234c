import type { Request, Response } from 'express';
import { declaresBody } from './body';

/** How long, and how much, an unread body is drained after an early error answer. */
export const LINGER = { ms: 5_000, bytes: 32 * 1024 * 1024 };

/**
 * An error answered before the body was read. Closing at once would make many clients (undici,
 * some mobile stacks) lose the answer while they are still sending, so, like nginx's lingering
 * close, drain for a bounded time and amount, then cut the connection.
 *
 * The draining starts here, before the answer: once an answer finishes over a body nobody
 * consumed, Node dumps the request (its parser then discards the bytes without a `data` event),
 * and a count started after that sees nothing while the client pushes gigabytes.
 */
export function lingerOnUnreadBody(req: Request, res: Response): void {
  // A GET or HEAD usually has no body; one that declares a body is drained and bounded too.
  if (req.complete || !declaresBody(req)) return;
  let drained = 0;
  let timer: NodeJS.Timeout | undefined;
  const cut = () => req.socket.destroy();
  req.on('data', (chunk: Buffer) => (drained += chunk.length) > LINGER.bytes && cut());
  req.once('close', () => clearTimeout(timer));
  req.resume();
  res.once('finish', () => {
    if (!req.complete) timer = setTimeout(cut, LINGER.ms).unref();
  });
}

/** Lets a client that sent `Expect: 100-continue` start sending, now that we mean to read. */
export function continueIfExpected(req: Request, res: Response): void {
  if (/100-continue/i.test(req.headers.expect ?? '') && !res.headersSent) res.writeContinue();
}
