import { RelayError } from '../errors';
import type { UploadTarget } from '../upload/video-fields';
import type { UploadTokenFields } from './fields';
import type { UploadTokenRecord } from './store';
import type { UploadTokens } from './tokens';

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
   * starts (the target is known, before the container is created); later calls in the same
   * request do nothing. Throws the 401 `upload_token_used_up` (…) if another request took the
   * last use meanwhile.
   */
  consume(): Promise<void>;
}

export function uploadGrant(
  tokens: UploadTokens,
  hash: string,
  record: UploadTokenRecord,
): UploadTokenGrant {
  let consumed: Promise<void> | undefined;
  const grant: UploadTokenGrant = {
    id: record.id,
    record,
    consume: () =>
      (consumed ??= tokens.consume(hash).then((updated) => {
        grant.record = updated;
      })),
  };
  return grant;
}

export function uploadTokenOf(res: {
  locals: Record<string, unknown>;
}): UploadTokenGrant | undefined {
  return res.locals.uploadToken as UploadTokenGrant | undefined;
}

/** For routes that read the target themselves: counts the use, then binds the token's fields. */
export async function applyUploadToken(
  res: { locals: Record<string, unknown> },
  target: UploadTarget,
): Promise<UploadTarget> {
  const grant = uploadTokenOf(res);
  if (!grant) return target;
  const bound = bindTokenFields(target, grant.record);
  await grant.consume();
  return bound;
}
