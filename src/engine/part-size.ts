import { MIN_PART_SIZE, MiB } from '../kernel/sizes';

export interface PartSizeOptions {
  /** UPLOAD_PART_SIZE: the size fast clients grow to. */
  max: number;
  /** Where every upload starts; api.video's minimum unless a test says otherwise. */
  min?: number;
  /**
   * How long filling one part should take the client. A client that fills parts faster gets
   * bigger parts (at most twice the last one each time), a slower one smaller ones (never below
   * `min`). One second keeps what a slow client holds small (a phone at 512 KiB/s stays at 5 MiB)
   * while a client above 16 MiB/s reaches 16 MiB parts by its third part.
   */
  targetFillMs?: number;
}

/**
 * The adaptive part size of one upload. Deterministic: it depends only on the sizes and fill
 * times it is told, so it is tested without clocks. Every size it gives is within
 * [min, max] and a whole number of MiB once above the minimum (readable logs, aligned buffers).
 */
export class PartSizer {
  readonly min: number;
  readonly max: number;
  private readonly targetFillMs: number;
  private current: number;

  constructor(options: PartSizeOptions) {
    this.min = options.min ?? MIN_PART_SIZE;
    this.max = Math.max(this.min, options.max);
    this.targetFillMs = options.targetFillMs ?? 1000;
    this.current = this.min;
  }

  /** The size to reserve for the next part. */
  get next(): number {
    return this.current;
  }

  /**
   * A part of `bytes` took the client `fillMs` to send (time the relay spent waiting for the
   * client only: pauses for room or for parts in flight are ours and are not counted).
   */
  filled(bytes: number, fillMs: number): void {
    if (bytes <= 0) return;
    const rate = bytes / Math.max(fillMs, 1); // bytes per ms; a part read in one burst counts as 1 ms
    const wanted = Math.min(rate * this.targetFillMs, 2 * bytes);
    this.current = clampSize(wanted, this.min, this.max);
  }
}

/** Rounds down to a whole MiB above `min`, within [min, max]. */
export function clampSize(bytes: number, min: number, max: number): number {
  if (!(bytes > min)) return min;
  if (bytes >= max) return max;
  return Math.max(min, Math.floor(bytes / MiB) * MiB);
}

/**
 * The rules every part the relay sends must follow (what api.video enforces): a part other than
 * the last is at least 5 MiB, and no part is above `max` (UPLOAD_PART_SIZE, itself at most 128 MiB)
 * or empty. Returns the first broken rule, or undefined.
 */
export function partRuleBroken(
  sizes: readonly number[],
  max: number,
  min = MIN_PART_SIZE,
): string | undefined {
  for (const [i, size] of sizes.entries()) {
    const last = i === sizes.length - 1;
    if (size <= 0) return `part ${i + 1} is empty`;
    if (size > max) return `part ${i + 1} is ${size} bytes, above ${max}`;
    if (!last && size < min) return `part ${i + 1} is ${size} bytes, below ${min} and not the last`;
  }
  return undefined;
}
