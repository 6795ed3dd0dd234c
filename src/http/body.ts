import type { IncomingMessage } from 'node:http';

/** Whether a request says it has a body: a Content-Length above 0, or a chunked one. */
export function declaresBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return length !== undefined ? length !== '0' : req.headers['transfer-encoding'] !== undefined;
}

/**
 * The body's length from Content-Length, once Node's parser has accepted it (so the body cannot
 * exceed it); undefined for a chunked body.
 */
export function contentLength(req: IncomingMessage): number | undefined {
  const header = req.headers['content-length'];
  if (header === undefined || !/^\d+$/.test(header)) return undefined;
  const n = Number(header);
  return Number.isSafeInteger(n) ? n : undefined;
}
