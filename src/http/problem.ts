import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { RelayError, isRelayError, toProblem } from '../kernel/errors';
import { lingerOnUnreadBody } from './linger';
import { loggableUrl } from '../kernel/loggable';
import { idOf } from './request-id';

export function sendProblem(res: Response, err: RelayError, requestId: string): void {
  // The request log line reads it: an expected refusal is a warning, only internal_error an error.
  res.locals.problemCode = err.code;
  for (const [name, value] of Object.entries(err.headers)) res.setHeader(name, value);
  res
    .status(err.status)
    .type('application/problem+json')
    .send(JSON.stringify(toProblem(err, requestId)));
}

/** The path as the client sent it, less any credential in it: answers end up in logs too. */
export const routeNotFound: RequestHandler = (req, _res, next) =>
  next(new RelayError('route_not_found', `There is no ${req.method} ${loggableUrl(req.path)}.`));

/** The one place errors become answers: problem+json, a stable code, the request id, no stack. */
export function problemHandler(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    const relayError = isRelayError(err) ? err : fromExpress(err);
    if (relayError.code === 'internal_error')
      logger.error({ err, requestId: req.id }, 'unexpected error');
    if (relayError.code === 'upstream_key_rejected') {
      logger.error(
        { event: 'upstream_key_rejected', requestId: req.id },
        'api.video rejected APIVIDEO_API_KEY: no upload can succeed until it is fixed',
      );
    }
    if (res.headersSent) return void res.destroy();
    lingerOnUnreadBody(req, res);
    sendProblem(res, relayError, idOf(req));
  };
}

/** Errors Express or its parsers raise carry a status; anything else is ours to hide. */
function fromExpress(err: unknown): RelayError {
  const status = (err as { status?: unknown })?.status;
  if (status === 413 || (err as { type?: unknown })?.type === 'entity.too.large') {
    return new RelayError('body_too_large', 'The request body is larger than this route takes.');
  }
  if (status === 400 || (err as { type?: unknown })?.type === 'entity.parse.failed') {
    return new RelayError('invalid_request', 'The request could not be read.');
  }
  return new RelayError('internal_error', 'Something went wrong on our side.', { cause: err });
}
