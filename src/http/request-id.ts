import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

const ACCEPTABLE = /^[\w.:@/+=-]{1,128}$/;

/** Honours a caller's X-Request-Id when it is sane (a proxy's trace id), else makes one. */
export function requestId(req: IncomingMessage, res: ServerResponse): string {
  const id = acceptableRequestId(req.headers['x-request-id']) ?? randomUUID();
  res.setHeader('X-Request-Id', id);
  return id;
}

/** A caller's X-Request-Id when it is safe to echo in a header and a log line. */
export function acceptableRequestId(incoming: string | string[] | undefined): string | undefined {
  return typeof incoming === 'string' && ACCEPTABLE.test(incoming) ? incoming : undefined;
}

/** The request's id as a string (pino-http types it loosely; ours is always a string). */
export function idOf(req: { id?: unknown }): string {
  return typeof req.id === 'string' || typeof req.id === 'number' ? String(req.id) : 'unknown';
}
