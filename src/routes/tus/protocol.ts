import { RelayError } from '../../kernel/errors';

/** The parts of tus 1.0 the relay speaks: https://tus.io/protocols/resumable-upload */
export const TUS_VERSION = '1.0.0';
export const TUS_EXTENSIONS = [
  'creation',
  'creation-with-upload',
  'creation-defer-length',
  'termination',
  'expiration',
];
export const OFFSET_STREAM = 'application/offset+octet-stream';

/** Upload ids the relay mints: 22 characters of base64url (128 random bits). */
export const UPLOAD_ID = /^[A-Za-z0-9_-]{22}$/;

function invalid(detail: string): RelayError {
  return new RelayError('invalid_tus_header', detail);
}

/** A non-negative integer header (Upload-Offset, Upload-Length): digits only, a safe integer. */
export function parseCount(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,16}$/.test(value) || !Number.isSafeInteger(Number(value)))
    throw invalid(`${name} must be a whole number of bytes, got "${value.slice(0, 32)}".`);
  return Number(value);
}

export interface MetadataLimits {
  maxEntries: number;
  maxValueBytes: number;
}

/**
 * Upload-Metadata: comma-separated `key base64value` pairs (the value may be absent). Keys are
 * bounded ASCII tokens, values bounded in size and count: they end up in api.video's fields.
 */
export function parseMetadata(
  header: string | undefined,
  limits: MetadataLimits,
): Record<string, string | null> {
  const metadata: Record<string, string | null> = Object.create(null) as Record<
    string,
    string | null
  >;
  if (header === undefined || header.trim() === '') return metadata;
  const pairs = header.split(',');
  if (pairs.length > limits.maxEntries)
    throw invalid(`Upload-Metadata has more than ${limits.maxEntries} entries.`);
  for (const pair of pairs) {
    const [key, value, extra] = pair.trim().split(' ');
    if (!key || !/^[A-Za-z0-9_.-]{1,64}$/.test(key) || extra !== undefined)
      throw invalid('Upload-Metadata must be comma-separated "key base64value" pairs.');
    if (key in metadata) throw invalid(`Upload-Metadata names "${key}" twice.`);
    if (value === undefined || value === '') {
      metadata[key] = null;
      continue;
    }
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value))
      throw invalid(`Upload-Metadata's value for "${key}" is not base64.`);
    const decoded = Buffer.from(value, 'base64');
    if (decoded.length > limits.maxValueBytes)
      throw new RelayError(
        'field_too_large',
        `The metadata "${key}" is longer than ${limits.maxValueBytes} bytes.`,
      );
    metadata[key] = decoded.toString('utf8');
  }
  return metadata;
}
