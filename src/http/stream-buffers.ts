import { PassThrough, Transform, type TransformOptions } from 'node:stream';

/**
 * How far a connection's streams read ahead of the engine: the request's readable side, busboy's
 * parser and file stream, and the pass-throughs the routes put in front of the engine each buffer
 * up to this much before the socket is paused.
 *
 * Pinned rather than left to Node's default, which Node 22 raised from 16 to 64 KiB: an upload
 * waiting for room in UPLOAD_MEMORY_BUDGET holds these buffers beyond its file bytes (within the
 * fixed UPLOAD_OVERHEAD_BYTES the budget counts for it), so with many slow uploads the larger
 * default costs RSS the budget does not see, for no gain in speed (docs/performance-notes.md).
 */
export const STREAM_HIGH_WATER_MARK = 16 * 1024;

/** The request body as the engine's input (raw and tus routes), with the pinned buffers. */
export function bodyStream(): PassThrough {
  return new PassThrough({ highWaterMark: STREAM_HIGH_WATER_MARK });
}

/** A Transform on the byte path, with the pinned buffers. */
export function byteTransform(transform: TransformOptions['transform']): Transform {
  return new Transform({ highWaterMark: STREAM_HIGH_WATER_MARK, transform });
}
