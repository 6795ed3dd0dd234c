import { createHash } from 'node:crypto';
import type { Video, VideoCreationPayload } from '../apivideo/types';
import type { UploadTarget } from './video-fields';

/**
 * The api.video metadata key under which the relay records who uploaded a video. Its value is a
 * hash of the principal id, so the account's dashboard shows no user id, token or IP address.
 */
export const OWNER_METADATA_KEY = 'relay-owner';

/** The owner mark of a principal: stable across restarts and instances, 128 bits of SHA-256. */
export function ownerMark(principalId: string): string {
  return createHash('sha256')
    .update(`apivideo-upload-relay/owner/${principalId}`)
    .digest('hex')
    .slice(0, 32);
}

/**
 * The payload with this principal's owner mark. A client-supplied entry under the same key is
 * dropped, so nobody can mark a video as someone else's.
 */
export function withOwner(
  payload: VideoCreationPayload,
  principalId: string,
): VideoCreationPayload {
  const others = (payload.metadata ?? []).filter((m) => m.key !== OWNER_METADATA_KEY);
  return {
    ...payload,
    metadata: [...others, { key: OWNER_METADATA_KEY, value: ownerMark(principalId) }],
  };
}

/** A create target carries the owner mark; a named container is left as it is. */
export function ownedTarget(target: UploadTarget, principalId: string): UploadTarget {
  return target.kind === 'create'
    ? { kind: 'create', payload: withOwner(target.payload, principalId) }
    : target;
}

/** True when the video carries exactly one owner mark, and it is this principal's. */
export function isOwnedBy(video: Video, principalId: string): boolean {
  const metadata = Array.isArray(video.metadata) ? (video.metadata as unknown[]) : [];
  const marks = metadata.filter(
    (m): m is { key: string; value: unknown } =>
      typeof m === 'object' && m !== null && (m as { key?: unknown }).key === OWNER_METADATA_KEY,
  );
  return marks.length === 1 && marks[0]!.value === ownerMark(principalId);
}

/** True when the video carries any owner mark: it was uploaded through a relay. */
export function hasOwnerMark(video: Video): boolean {
  const metadata = Array.isArray(video.metadata) ? (video.metadata as unknown[]) : [];
  return metadata.some(
    (m) =>
      typeof m === 'object' && m !== null && (m as { key?: unknown }).key === OWNER_METADATA_KEY,
  );
}
