import { isVideoId } from '../apivideo/video-id';
import { RelayError } from '../kernel/errors';
import type { VideoCreationPayload } from '../apivideo/types';

/** Text fields as they arrived: a multipart form or a query string, repeated names kept. */
export type FieldValues = Map<string, string[]>;

/** Where the file goes: a container the relay creates, or one the client already has. */
export type UploadTarget =
  { kind: 'create'; payload: VideoCreationPayload } | { kind: 'existing'; videoId: string };

const MAX_TEXT = 4096;
/** As upload tokens bound them: a tus metadata `tags` list is otherwise unbounded. */
const MAX_TAGS = 32;
const MAX_TAG = 256;
/** api.video's player ids: `pt` and letters or digits. */
const PLAYER_ID = /^pt[0-9A-Za-z]{1,40}$/;

export function fieldValuesFromQuery(query: Record<string, unknown>): FieldValues {
  const values: FieldValues = new Map();
  for (const [name, value] of Object.entries(query)) {
    const list = (Array.isArray(value) ? value : [value]).filter(
      (v): v is string => typeof v === 'string',
    );
    values.set(name, list);
  }
  return values;
}

/**
 * Reads the upload's target from its fields. `title` defaults to the file name without its
 * extension, since api.video requires one and clients rarely send it.
 */
export function uploadTarget(fields: FieldValues, filename: string | undefined): UploadTarget {
  const one = (name: string): string | undefined => {
    const list = fields.get(name);
    if (!list || list.length === 0) return undefined;
    if (list.length > 1) throw new RelayError('invalid_field', `"${name}" may be given once`);
    if (list[0]!.length > MAX_TEXT)
      throw new RelayError('invalid_field', `"${name}" is longer than ${MAX_TEXT} characters`);
    return list[0];
  };
  const videoId = one('videoId');
  if (videoId !== undefined) {
    if (!isVideoId(videoId))
      throw new RelayError('invalid_video_id', `"videoId" is not an api.video video id.`);
    return { kind: 'existing', videoId };
  }
  const payload: VideoCreationPayload = { title: one('title') ?? titleFromFilename(filename) };
  const description = one('description');
  if (description !== undefined) payload.description = description;
  const isPublic = one('public');
  if (isPublic !== undefined) payload.public = parseBoolean(isPublic);
  const playerId = one('playerId');
  if (playerId !== undefined) {
    if (!PLAYER_ID.test(playerId))
      throw new RelayError('invalid_field', '"playerId" is not an api.video player id.');
    payload.playerId = playerId;
  }
  const tags = fields.get('tags');
  if (tags && tags.length > MAX_TAGS)
    throw new RelayError('invalid_field', `At most ${MAX_TAGS} tags, got ${tags.length}.`);
  if (tags?.some((t) => t.length > MAX_TAG))
    throw new RelayError('invalid_field', `A tag is at most ${MAX_TAG} characters.`);
  if (tags && tags.length > 0) payload.tags = tags;
  const metadata = one('metadata');
  if (metadata !== undefined) payload.metadata = parseMetadata(metadata);
  return { kind: 'create', payload };
}

export function titleFromFilename(filename: string | undefined): string {
  const base = (filename ?? '').replace(/^.*[\\/]/, '');
  const stem = base.includes('.') ? base.slice(0, base.lastIndexOf('.')) : base;
  return stem.trim() || 'Untitled';
}

function parseBoolean(text: string): boolean {
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new RelayError('invalid_field', `"public" must be true or false, got "${text}"`);
}

function parseMetadata(text: string): Array<{ key: string; value: string }> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new RelayError('invalid_field', '"metadata" must be a JSON object');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new RelayError('invalid_field', '"metadata" must be a JSON object');
  }
  return Object.entries(parsed).map(([key, value]) => {
    if (typeof value !== 'string')
      throw new RelayError('invalid_field', `"metadata.${key}" must be a string`);
    return { key, value };
  });
}
