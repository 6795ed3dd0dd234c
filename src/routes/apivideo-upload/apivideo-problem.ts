import type { ErrorRequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { ApiVideoHttpError } from '../../apivideo/errors';
import { PROBLEM_TYPE_BASE, RelayError, isRelayError, type ErrorCode } from '../../kernel/errors';
import { lingerOnUnreadBody } from '../../http/linger';
import { idOf } from '../../http/request-id';

/**
 * api.video's problem shape (`type`, `title`, `status`, `name`), which its uploaders parse,
 * with the relay's `code`, `detail` and `requestId` beside it. Where api.video has a problem for
 * the same fault its `type` is used, so a client that matches on it keeps working; otherwise
 * `type` links the relay's docs/errors.md row.
 */
export interface ApiVideoStyleProblem {
  type: string;
  title: string;
  status: number;
  name?: string;
  detail: string;
  code: ErrorCode;
  requestId: string;
}

const APIVIDEO_TYPES: Partial<Record<ErrorCode, { type: string; name?: string }>> = {
  file_missing: { type: 'uploaded-file-no-file', name: 'file' },
  too_many_files: { type: 'uploaded-file-multiple-files', name: 'file' },
  invalid_field: { type: 'invalid-attribute' },
  video_not_found: { type: 'resource-not-found', name: 'videoId' },
  too_many_uploads: { type: 'too-many-requests' },
  too_many_uploads_per_client: { type: 'too-many-requests' },
};

export function apiVideoProblem(err: RelayError, requestId: string): ApiVideoStyleProblem {
  const upstream = err.cause instanceof ApiVideoHttpError ? err.cause : undefined;
  // A part api.video refused as the client's fault (too small, already uploaded…): its own answer.
  if (
    err.code === 'upstream_failed' &&
    upstream &&
    (upstream.status === 400 || upstream.status === 404) &&
    upstream.problemType?.startsWith('https://docs.api.video/')
  ) {
    return {
      type: upstream.problemType,
      title: upstream.problemTitle,
      status: upstream.status,
      detail: err.message,
      code: err.code,
      requestId,
    };
  }
  const known = APIVIDEO_TYPES[err.code];
  return {
    type: known ? `https://docs.api.video/reference/${known.type}` : PROBLEM_TYPE_BASE + err.code,
    title: err.title,
    status: err.status,
    ...(known?.name ? { name: known.name } : {}),
    detail: err.message,
    code: err.code,
    requestId,
  };
}

export function sendApiVideoProblem(res: Response, err: RelayError, requestId: string): void {
  const problem = apiVideoProblem(err, requestId);
  for (const [name, value] of Object.entries(err.headers)) res.setHeader(name, value);
  // A Buffer, so Express adds no charset: api.video's clients match the media type exactly.
  res.status(problem.status).setHeader('Content-Type', 'application/problem+json');
  res.send(Buffer.from(JSON.stringify(problem)));
}

/** `/upload`'s errors, in api.video's shape; anything unexpected is logged and hidden. */
export function apiVideoProblemHandler(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    const relayError = isRelayError(err)
      ? err
      : new RelayError('internal_error', 'Something went wrong on our side.', { cause: err });
    if (relayError.code === 'internal_error')
      logger.error({ err, requestId: req.id }, 'unexpected error');
    if (res.headersSent) return void res.destroy();
    lingerOnUnreadBody(req, res);
    sendApiVideoProblem(res, relayError, idOf(req));
  };
}
