import { RelayError } from '../kernel/errors';
import type { UploadTokenFields } from '../stores/upload-token-store';

/** What a token binds: the upload's limits and the video's fields, which win over the client's. */
export interface UploadTokenSpec {
  ttl: number;
  maxUses: number;
  fields: UploadTokenFields;
}

/** Bounds: a token is stored per upload in Redis, so a minting client cannot make it huge. */
export const TOKEN_LIMITS = {
  ttlDefault: 3600,
  ttlMin: 1,
  ttlMax: 30 * 24 * 3600,
  maxUsesDefault: 1,
  maxUsesMax: 1000,
  title: 256,
  description: 4096,
  tags: 32,
  tag: 256,
  metadata: 32,
  metadataKey: 256,
  metadataValue: 1024,
} as const;

const ID = /^[A-Za-z0-9_-]{1,64}$/;
const KNOWN = new Set([
  'ttl',
  'maxUses',
  'maxFileSize',
  'title',
  'description',
  'tags',
  'metadata',
  'playerId',
  'public',
  'videoId',
]);

/**
 * Reads `POST /v1/upload-tokens`'s JSON body. Every problem is reported at once, and unknown
 * fields are refused: a misspelt `maxUse` silently ignored would mint a token that allows less
 * (or more) than the backend meant.
 */
export function parseTokenSpec(body: unknown): UploadTokenSpec {
  if (body === undefined || body === null) body = {};
  if (typeof body !== 'object' || Array.isArray(body))
    throw new RelayError('invalid_request', 'The body must be a JSON object.');
  const input = body as Record<string, unknown>;
  const problems: string[] = [];
  for (const name of Object.keys(input))
    if (!KNOWN.has(name)) problems.push(`"${name}" is not a field of an upload token`);

  const int = (name: string, fallback: number | undefined, min: number, max: number) => {
    const value = input[name];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      problems.push(`"${name}" must be a whole number from ${min} to ${max}`);
      return fallback;
    }
    return value;
  };
  const text = (name: string, max: number, pattern?: RegExp) => {
    const value = input[name];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string' || value.length === 0 || value.length > max) {
      problems.push(`"${name}" must be a string of 1 to ${max} characters`);
      return undefined;
    }
    if (pattern && !pattern.test(value)) {
      problems.push(`"${name}" is not an api.video id`);
      return undefined;
    }
    return value;
  };

  const ttl = int('ttl', TOKEN_LIMITS.ttlDefault, TOKEN_LIMITS.ttlMin, TOKEN_LIMITS.ttlMax)!;
  const maxUses = int('maxUses', TOKEN_LIMITS.maxUsesDefault, 1, TOKEN_LIMITS.maxUsesMax)!;
  const fields: UploadTokenFields = {};
  const maxFileSize = int('maxFileSize', undefined, 1, Number.MAX_SAFE_INTEGER);
  if (maxFileSize !== undefined) fields.maxFileSize = maxFileSize;
  const title = text('title', TOKEN_LIMITS.title);
  if (title !== undefined) fields.title = title;
  const description = text('description', TOKEN_LIMITS.description);
  if (description !== undefined) fields.description = description;
  const playerId = text('playerId', 64, ID);
  if (playerId !== undefined) fields.playerId = playerId;
  const videoId = text('videoId', 64, ID);
  if (videoId !== undefined) fields.videoId = videoId;
  if (input.public !== undefined && input.public !== null) {
    if (typeof input.public === 'boolean') fields.public = input.public;
    else problems.push('"public" must be true or false');
  }
  if (input.tags !== undefined && input.tags !== null) {
    const tags = input.tags;
    if (
      !Array.isArray(tags) ||
      tags.length > TOKEN_LIMITS.tags ||
      tags.some((t) => typeof t !== 'string' || t.length === 0 || t.length > TOKEN_LIMITS.tag)
    ) {
      problems.push(
        `"tags" must be an array of at most ${TOKEN_LIMITS.tags} strings of 1 to ${TOKEN_LIMITS.tag} characters`,
      );
    } else fields.tags = tags as string[];
  }
  if (input.metadata !== undefined && input.metadata !== null) {
    const metadata = parseMetadata(input.metadata);
    if (typeof metadata === 'string') problems.push(metadata);
    else fields.metadata = metadata;
  }
  if (fields.videoId !== undefined) {
    const creationOnly = ['title', 'description', 'tags', 'metadata', 'playerId', 'public'];
    const given = creationOnly.filter((name) => input[name] !== undefined && input[name] !== null);
    if (given.length > 0)
      problems.push(
        `"videoId" names an existing video: ${given.map((n) => `"${n}"`).join(', ')} would not apply to it`,
      );
    if (maxUses > 1) problems.push('"videoId" takes one upload: "maxUses" must be 1');
  }
  if (problems.length > 0) throw new RelayError('invalid_field', problems.join('; ') + '.');
  return { ttl, maxUses, fields };
}

/** `{"key": "value"}` (as the relay's form field takes it) or api.video's `[{key, value}]`. */
function parseMetadata(value: unknown): Array<{ key: string; value: string }> | string {
  const entries: Array<[unknown, unknown]> = Array.isArray(value)
    ? value.map((e) =>
        typeof e === 'object' && e !== null
          ? [(e as { key?: unknown }).key, (e as { value?: unknown }).value]
          : [undefined, undefined],
      )
    : typeof value === 'object' && value !== null
      ? Object.entries(value)
      : [];
  const problem = `"metadata" must be an object of at most ${TOKEN_LIMITS.metadata} string values (keys 1 to ${TOKEN_LIMITS.metadataKey} characters, values at most ${TOKEN_LIMITS.metadataValue}), or an array of {key, value}`;
  if (typeof value !== 'object' || value === null || entries.length > TOKEN_LIMITS.metadata)
    return problem;
  const out: Array<{ key: string; value: string }> = [];
  const seen = new Set<string>();
  for (const [k, v] of entries) {
    if (
      typeof k !== 'string' ||
      typeof v !== 'string' ||
      k.length === 0 ||
      k.length > TOKEN_LIMITS.metadataKey ||
      v.length > TOKEN_LIMITS.metadataValue ||
      seen.has(k)
    )
      return problem;
    seen.add(k);
    out.push({ key: k, value: v });
  }
  return out;
}
