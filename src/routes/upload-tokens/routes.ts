import express, { Router, type RequestHandler } from 'express';
import { RelayError } from '../../kernel/errors';
import { principalOf } from '../../http/client-auth';
import { parseTokenSpec } from '../../upload-tokens/fields';
import type { UploadTokens } from '../../upload-tokens/tokens';

export const UPLOAD_TOKENS_PATH = '/v1/upload-tokens';

/**
 * Minting, reading and revoking upload tokens. `authenticate` is the relay's client auth (a static
 * token or a JWT): an upload token cannot mint more of itself. A token is visible only to the
 * principal that minted it; anyone else gets the same 404 as for a token that does not exist, so
 * the answer tells nothing about other principals' tokens.
 */
export function uploadTokenRoutes(tokens: UploadTokens, authenticate: RequestHandler): Router {
  const router = Router();
  const json = express.json({ limit: '64kb', strict: false, type: () => true });

  router.post(UPLOAD_TOKENS_PATH, authenticate, json, async (req, res, next) => {
    try {
      const spec = parseTokenSpec(req.body);
      const { token, record } = await tokens.mint(principalOf(res), spec);
      req.log.info(
        {
          event: 'upload_token_minted',
          uploadTokenId: record.id,
          maxUses: record.maxUses,
          ttl: record.ttl,
        },
        'upload token minted',
      );
      res
        .status(201)
        .location(`${UPLOAD_TOKENS_PATH}/${record.id}`)
        .set('Cache-Control', 'no-store')
        .json({ token, ...tokens.view(record) });
    } catch (err) {
      next(err);
    }
  });

  const owned: RequestHandler = async (req, res, next) => {
    try {
      const found = await tokens.find(String(req.params.token));
      if (!found || found.record.principal !== principalOf(res).id)
        throw new RelayError('upload_token_not_found', 'There is no such upload token of yours.');
      res.locals.ownedToken = found;
      next();
    } catch (err) {
      next(err);
    }
  };

  router.get(`${UPLOAD_TOKENS_PATH}/:token`, authenticate, owned, (_req, res) => {
    const { record } = res.locals.ownedToken as Awaited<ReturnType<UploadTokens['find']>> & {};
    res.set('Cache-Control', 'no-store').json(tokens.view(record));
  });

  router.delete(`${UPLOAD_TOKENS_PATH}/:token`, authenticate, owned, async (req, res, next) => {
    try {
      const { hash, record } = res.locals.ownedToken as Awaited<
        ReturnType<UploadTokens['find']>
      > & {};
      await tokens.revoke(hash);
      req.log.info(
        { event: 'upload_token_revoked', uploadTokenId: record.id },
        'upload token revoked',
      );
      res.status(204).end();
    } catch (err) {
      next(err);
    }
  });

  return router;
}
