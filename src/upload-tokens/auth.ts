import type { Request, RequestHandler } from 'express';
import type { Principal } from '../http/client-auth';
import { uploadGrant } from './bind';
import { looksLikeUploadToken } from './token';
import type { UploadTokens } from './tokens';

export type TokenUse =
  /** Checks the token; the route counts the use when the upload starts (grant.consume()). */
  | 'start'
  /** Checks and counts the use now: the request itself starts the upload (tus creation). */
  | 'start-now'
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
      const { hash, record } = await tokens.check(
        bearer,
        use === 'continue' ? 'continue' : 'start',
      );
      const grant = uploadGrant(tokens, hash, record);
      if (use === 'start-now') await grant.consume();
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
