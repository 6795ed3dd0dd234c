import type { ChunkProgress } from '../../sessions/session';
/**
 * `Content-Range` on `POST /upload?token=`, in the forms api.video's own clients send, and how a
 * chunk becomes one part upstream.
 */
export type ChunkRange =
  /** No header: the whole file in this request. */
  | { kind: 'whole' }
  /** `part n/m` (m known) or `part n/*`. */
  | { kind: 'part'; part: number; total: number | undefined }
  /** `bytes a-b/size`: the older byte form. */
  | { kind: 'bytes'; from: number; to: number; size: number };

/** api.video's ceiling on parts is far below this; it only keeps numbers sane in state and logs. */
export const MAX_PARTS = 10_000;

export class RangeProblem extends Error {}

export function parseChunkRange(header: string | undefined): ChunkRange {
  if (header === undefined || header.trim() === '') return { kind: 'whole' };
  if (header.length > 100) throw new RangeProblem('Content-Range is too long.');
  let m = /^part (\d{1,5})\/(\d{1,5}|\*)$/.exec(header.trim());
  if (m) {
    const part = Number(m[1]);
    const total = m[2] === '*' ? undefined : Number(m[2]);
    if (
      part < 1 ||
      part > MAX_PARTS ||
      (total !== undefined && (total < part || total > MAX_PARTS))
    )
      throw new RangeProblem(`Content-Range "${header}" names an impossible part.`);
    return { kind: 'part', part, total };
  }
  m = /^bytes (\d{1,16})-(\d{1,16})\/(\d{1,16})$/.exec(header.trim());
  if (m) {
    const [from, to, size] = [Number(m[1]), Number(m[2]), Number(m[3])];
    if (![from, to, size].every(Number.isSafeInteger) || from > to || to >= size)
      throw new RangeProblem(`Content-Range "${header}" is not a range inside the file.`);
    return { kind: 'bytes', from, to, size };
  }
  throw new RangeProblem(
    'Content-Range must be "part n/m", "part n/*" or "bytes a-b/size", or absent for a whole file.',
  );
}

export interface PartPlan {
  part: number;
  /** This chunk completes the file (`part m/m`, `bytes …-(size-1)/size`, or a whole file). */
  last: boolean;
  /** The chunk's length when the header says it (`bytes`); the body must match it. */
  length?: number;
  /** What to remember for the next chunk. */
  progress: ChunkProgress;
}

/**
 * One chunk → one part. `bytes a-b/size` maps as api.video's clients cut files: every chunk but the
 * last is as long as the first, so part = a / firstChunkLength + 1, and the chunk ending at
 * size - 1 is the last. A range that does not fall on that grid is refused rather than guessed.
 */
export function planPart(range: ChunkRange, progress: ChunkProgress): PartPlan {
  if (range.kind === 'whole') return { part: 1, last: true, progress };
  if (range.kind === 'part') {
    if (
      progress.totalParts !== undefined &&
      range.total !== undefined &&
      range.total !== progress.totalParts
    )
      throw new RangeProblem(
        `This upload was declared with ${progress.totalParts} parts, not ${range.total}.`,
      );
    const totalParts = range.total ?? progress.totalParts;
    return {
      part: range.part,
      last: totalParts !== undefined && range.part === totalParts,
      progress: { ...progress, totalParts },
    };
  }
  const length = range.to - range.from + 1;
  const last = range.to === range.size - 1;
  const chunkSize = progress.chunkSize ?? (range.from === 0 ? length : undefined);
  if (chunkSize === undefined)
    throw new RangeProblem('The first chunk (bytes 0-…) must come before the others.');
  if (range.from % chunkSize !== 0 || (!last && length !== chunkSize) || length > chunkSize)
    throw new RangeProblem(
      `Chunks must be cut every ${chunkSize} bytes (the first chunk's length): "bytes ${range.from}-${range.to}" is not.`,
    );
  const totalParts = Math.ceil(range.size / chunkSize);
  if (
    (progress.size !== undefined && progress.size !== range.size) ||
    (progress.totalParts !== undefined && progress.totalParts !== totalParts)
  )
    throw new RangeProblem('The file size differs from the one the first chunk declared.');
  if (totalParts > MAX_PARTS)
    throw new RangeProblem(`A file is cut into at most ${MAX_PARTS} chunks.`);
  return {
    part: range.from / chunkSize + 1,
    last,
    length,
    progress: { chunkSize, totalParts, size: range.size },
  };
}
