import { randomBytes } from 'node:crypto';
import { RelayError } from '../kernel/errors';
import type { UploadTarget } from '../engine/video-fields';
import type { UploadTokenRecord } from '../stores/upload-token-store';
import type { UploadTokens } from './tokens';
import { type UploadTokenFields } from '../stores/upload-token-store';

/**
 * The upload's target once its token has had its say: the token's fields win over the client's.
 * A token that names a video uploads into it and nowhere else; a token that does not creates a
 * new video, so its holder can never push bytes into some other video of the account. Metadata
 * and tags are replaced whole, not merged: a backend that binds `{"userId": "42"}` must not see
 * a client add keys beside it.
 */
export function bindTokenFields(
  target: UploadTarget,
  token: { fields: UploadTokenFields },
): UploadTarget {
  const bound = token.fields;
  if (bound.videoId !== undefined) return { kind: 'existing', videoId: bound.videoId };
  if (target.kind === 'existing') {
    throw new RelayError(
      'upload_token_video_mismatch',
      'An upload token uploads into a new video (or the one it was minted for), not into a video the client names.',
    );
  }
  const payload = { ...target.payload };
  if (bound.title !== undefined) payload.title = bound.title;
  if (bound.description !== undefined) payload.description = bound.description;
  if (bound.tags !== undefined) payload.tags = [...bound.tags];
  if (bound.metadata !== undefined) payload.metadata = bound.metadata.map((m) => ({ ...m }));
  if (bound.playerId !== undefined) payload.playerId = bound.playerId;
  if (bound.public !== undefined) payload.public = bound.public;
  return { kind: 'create', payload };
}

/** An upload token that authenticated this request (`res.locals.uploadToken`). */
export interface UploadTokenGrant {
  /** The token's public id, for logs, metrics and webhooks. */
  id: string;
  record: UploadTokenRecord;
  /**
   * Counts the upload against `maxUses`, atomically across replicas. Call it when the upload
   * starts (everything the request says has been checked, and the route is about to begin the
   * upload); later calls in the same request do nothing. Resolves with the use's key, which the
   * upload carries (`UploadIdentity.tokenUse`) so that its ending gives the use back
   * (TokenUseSettlement). Throws the 401 `upload_token_used_up` (…) if another request took the
   * last use meanwhile.
   */
  consume(): Promise<string>;
  /**
   * Gives back the use this request counted, for an upload that could not begin after all (its
   * session could not be stored). Never throws: the refusal it follows is what the client hears.
   */
  refund(): Promise<void>;
}

export function uploadGrant(
  tokens: UploadTokens,
  hash: string,
  record: UploadTokenRecord,
): UploadTokenGrant {
  // Of the relay's own making, never a client's request id: a client choosing it could otherwise
  // make two uploads share one use.
  const use = randomBytes(12).toString('base64url');
  let consumed: Promise<string> | undefined;
  const grant: UploadTokenGrant = {
    id: record.id,
    record,
    consume: () =>
      (consumed ??= tokens.consume(hash, use).then((updated) => {
        grant.record = updated;
        return use;
      })),
    refund: async () => {
      if (!consumed) return;
      await consumed.then(() => tokens.store.refund(hash, use)).catch(() => undefined);
    },
  };
  return grant;
}

export function uploadTokenOf(res: {
  locals: Record<string, unknown>;
}): UploadTokenGrant | undefined {
  return res.locals.uploadToken as UploadTokenGrant | undefined;
}

/**
 * For routes that read the target themselves: binds the token's fields, then counts the use
 * (`tokenUse`: its key, for the upload's identity).
 */
export async function applyUploadToken(
  res: { locals: Record<string, unknown> },
  target: UploadTarget,
): Promise<{ target: UploadTarget; tokenUse?: string }> {
  const grant = uploadTokenOf(res);
  if (!grant) return { target };
  const bound = bindTokenFields(target, grant.record);
  return { target: bound, tokenUse: await grant.consume() };
}
