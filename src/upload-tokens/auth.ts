import type { Request, RequestHandler } from 'express';
import type { Principal } from '../http/client-auth';
import { uploadGrant } from './bind';
import { looksLikeUploadToken } from './token';
import type { UploadTokens } from './tokens';
import { FORM_OVERHEAD_ALLOWANCE } from '../kernel/sizes';
import { fileTooLarge } from '../kernel/errors';

export type TokenUse =
  /**
   * A request that may start an upload: the token must be active. Nothing is counted here; the
   * route counts the use (grant.consume()) once the request has passed every check and the upload
   * begins, so a refusal before that (admission, a bad field, a limit) costs nothing.
   */
  | 'start'
  /** A request inside an upload already started: the token must exist and not be revoked. */
  | 'continue';

/**
 * `Authorization: Bearer to_…` on an upload route: the upload runs as the principal that minted
 * the token, and the token rides along in `res.locals.uploadToken` for the route to bind its
 * fields. Placed before clientAuth, which then leaves the principal alone. Any other bearer
 * credential passes through untouched.
 */
export function uploadTokenAuth(
  tokens: UploadTokens,
  useOf: (req: Request) => TokenUse,
): RequestHandler {
  return async (req, res, next) => {
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    if (!bearer || !looksLikeUploadToken(bearer)) return next();
    try {
      const use = useOf(req);
      const { hash, record } = await tokens.check(bearer, use);
      if (use === 'start') refuseDeclaredOverLimit(req, record.fields.maxFileSize);
      const grant = uploadGrant(tokens, hash, record);
      res.locals.principal = {
        id: record.principal,
        kind: record.principalKind,
      } satisfies Principal;
      res.locals.uploadToken = grant;
      req.log?.setBindings?.({ uploadTokenId: record.id });
      next();
    } catch (err) {
      next(err);
    }
  };
}

/** Upload tokens first, then the relay's own client auth: one handler, for routes that take one. */
export function withUploadTokens(
  tokens: UploadTokens,
  useOf: (req: Request) => TokenUse,
  authenticate: RequestHandler,
): RequestHandler {
  const byToken = uploadTokenAuth(tokens, useOf);
  return (req, res, next) =>
    void byToken(req, res, (err?: unknown) =>
      err ? next(err) : void authenticate(req, res, next),
    );
}

/**
 * The token's maxFileSize, where a request declares its size up front: tus `Upload-Length`, or a
 * body's Content-Length. A body of unknown length is bounded by UPLOAD_MAX_FILE_SIZE only (the
 * engine's limit is process-wide).
 */
function refuseDeclaredOverLimit(req: Request, maxFileSize: number | undefined): void {
  if (!maxFileSize) return;
  const tusLength = req.headers['upload-length'];
  const length = req.headers['content-length'];
  const multipart = (req.headers['content-type'] ?? '').toLowerCase().startsWith('multipart/');
  const over =
    (tusLength !== undefined && Number(tusLength) > maxFileSize) ||
    (tusLength === undefined &&
      length !== undefined &&
      Number(length) > maxFileSize + (multipart ? FORM_OVERHEAD_ALLOWANCE : 0));
  if (over) throw fileTooLarge(maxFileSize, 'token');
}
