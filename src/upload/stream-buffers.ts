/**
 * How far a connection's streams read ahead of the engine: the request's readable side and
 * busboy's parser and file stream each buffer up to this much before the socket is paused.
 *
 * Pinned rather than left to Node's default, which Node 22 raised from 16 to 64 KiB: an upload
 * waiting for room in UPLOAD_MEMORY_BUDGET holds these buffers outside the budget, and with 1000
 * slow uploads (659 of them waiting) Node 24's default added about 100 MiB of RSS (1321 against
 * 1225 MiB in one run each); one fast upload and 8 concurrent ones ran at the same speed with
 * either (docs/performance-notes.md).
 */
export const STREAM_HIGH_WATER_MARK = 16 * 1024;
