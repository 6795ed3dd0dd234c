/**
 * Sizes and limits every part of the relay agrees on: api.video's part sizes, what a form adds
 * around a file, how a byte count is shown. One place, so a rule is never written twice.
 */

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** api.video's smallest part other than the last, and its largest part. */
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 128 * MiB;

/**
 * What the memory budget counts for each upload in progress besides its file bytes: its socket
 * reads and the streams' 16 KiB buffers, the request, parser and engine objects in V8's heap, the
 * allocator's share (docs/architecture.md, "The uploads' own cost").
 */
export const UPLOAD_OVERHEAD_BYTES = 128 * KiB;

/** Room for a form's framing and text fields when a multipart body's Content-Length is judged. */
export const FORM_OVERHEAD_ALLOWANCE = MiB;

/** The stricter of two limits, where 0 or undefined means none. */
export function smallerLimit(a: number | undefined, b: number | undefined): number {
  if (!a) return b ?? 0;
  if (!b) return a;
  return Math.min(a, b);
}

/** "16 MiB" for whole MiB, else bytes. */
export function formatBytes(bytes: number): string {
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB} MiB`;
  return `${bytes} bytes`;
}
