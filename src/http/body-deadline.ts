import type { Request, RequestHandler } from 'express';
import { declaresBody } from './body';

/** True for the requests whose body is a file the upload engine streams (and times itself). */
function streamsAnUpload(req: Request): boolean {
  if (req.method === 'POST' && (req.path === '/v1/videos' || req.path === '/upload')) return true;
  const tus = req.path === '/v1/uploads' || req.path.startsWith('/v1/uploads/');
  return tus && (req.method === 'POST' || req.method === 'PATCH');
}

/**
 * Every body that is not an upload (JSON for a token, a stray body on a GET) must arrive within
 * `ms`, like the headers before it: Node's own request timeout is off (a 1 GiB upload over a
 * phone takes long), so without this a client trickling a byte every few seconds would hold a
 * socket, and its file descriptor, for ever. Uploads have their own idle and request timeouts.
 */
export function bodyDeadline(ms: number): RequestHandler {
  return (req, _res, next) => {
    if (req.complete || !declaresBody(req) || streamsAnUpload(req)) return next();
    const timer = setTimeout(() => req.complete || req.socket.destroy(), ms).unref();
    const clear = () => clearTimeout(timer);
    req.once('end', clear);
    req.once('close', clear);
    next();
  };
}
