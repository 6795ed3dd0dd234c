import type { BlockPool } from './block-pool';
import type { BudgetAccount, Reservation } from './memory-budget';
import { MIN_PART_SIZE, type PartSizer } from './part-size';

/** Parts from this size on use the large blocks (a client fast enough to have grown its parts). */
const LARGE_PART = 8 * 1024 * 1024;

/** A part cut from the stream, holding its room in the budget until it is let go. */
export interface HeldPart {
  number: number;
  /** The bytes, in order, never joined: blocks from the pool, or the client's own chunks. */
  chunks: Buffer[];
  size: number;
  /** Client time spent filling it (ms), for logs. */
  fillMs: number;
  /** api.video acknowledged it: its room goes back to the budget, its blocks to the pool. */
  acknowledged(): void;
  /** It failed or was abandoned: its room goes back, its blocks to the GC (a socket may hold them). */
  discard(): void;
}

/** Hands a full part (not the last) to whoever sends it; resolves once it is taken (queue room). */
export type ReleasePart = (part: HeldPart) => Promise<void>;

export interface BudgetedCutterOptions {
  account: BudgetAccount;
  sizer: PartSizer;
  /** Copy into pooled blocks; without one, a part is the list of the client's chunks. */
  pool?: BlockPool;
  /**
   * Bigger blocks for big parts (a fast client's): fewer writes to api.video's socket per part,
   * while a slow client's 5 MiB parts keep small blocks (what it holds stays close to what it sent).
   */
  largePool?: BlockPool;
  /** A resumed upload goes on from its next part. */
  firstNumber?: number;
  /**
   * An upper bound of the bytes still to come, when the route knows one (a Content-Length, a tus
   * Upload-Length): a short upload then reserves what it can hold, not a whole part.
   */
  maxBytes?: number;
  /** The least a part other than the last may be; api.video's 5 MiB (a test may lower it). */
  minPart?: number;
}

interface OpenPart {
  number: number;
  reservation: Reservation;
  chunks: Buffer[];
  /** Where its blocks come from (pooled mode). */
  pool: BlockPool | undefined;
  /** The block being filled (pooled mode) and how far. */
  block: Buffer | undefined;
  blockFill: number;
  fillMs: number;
}

/**
 * Cuts one upload's bytes into parts whose sizes the PartSizer chooses, each in room reserved
 * from the memory budget before its first byte is held.
 *
 * The order in `push` is what makes the budget deadlock-free: a part that is full is handed on
 * (to be sent, which needs no room) before room for the next part is asked for, so an upload
 * only ever waits for room while it holds no unfinished part. Bytes of a chunk beyond a full part
 * stay in the caller's hand (at most one read) until their part has room.
 *
 * A full part is handed on only once a further byte has arrived, so the part `finish()` returns
 * is really the last one (it can be labelled `part N/N`, and no part is ever empty).
 */
export class BudgetedCutter {
  private open: OpenPart | undefined;
  private nextNumber: number;
  private maxBytes: number;
  private readonly minPart: number;
  private waitMs = 0;
  private closed = false;

  constructor(private readonly options: BudgetedCutterOptions) {
    this.nextNumber = options.firstNumber ?? 1;
    this.maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
    this.minPart = options.minPart ?? MIN_PART_SIZE;
  }

  /** Bytes held in the part being filled (not yet handed on). */
  get pendingBytes(): number {
    return this.open?.reservation.held ?? 0;
  }

  /** True while waiting for room in the budget: the relay's wait, not the client's. */
  get waitingForRoom(): boolean {
    return this.options.account.waiting;
  }

  /**
   * Takes a chunk: fills the open part, hands full parts to `release`, reserves room for the next
   * part when bytes are left over (waiting, in FIFO order, while the budget is used up).
   * `clientMs`: how long the client took to send this chunk (the part's fill time).
   */
  async push(
    chunk: Buffer,
    release: ReleasePart,
    signal?: AbortSignal,
    clientMs = 0,
  ): Promise<void> {
    this.waitMs += clientMs;
    let rest = chunk;
    while (rest.length > 0) {
      if (this.closed) throw new Error('the cutter is closed');
      if (this.open && this.open.reservation.room === 0) {
        // More bytes exist, so it is not the last part, and api.video wants it >= 5 MiB. Smaller
        // is only reachable if maxBytes was not an upper bound (the caller's bug).
        if (this.open.reservation.held < this.minPart) {
          this.close();
          throw new RangeError('more bytes arrived than the upload was said to have');
        }
        await release(this.cut());
        continue;
      }
      if (!this.open) await this.openPart(signal);
      const n = Math.min(rest.length, this.open!.reservation.room);
      this.write(n === rest.length ? rest : rest.subarray(0, n));
      rest = rest.subarray(n);
    }
  }

  /**
   * Makes room reserved elsewhere (empty) the next part's: a resumed upload reserves before it
   * loads the bytes it carried over, so they are never held unreserved.
   */
  adopt(reservation: Reservation): void {
    if (this.open) throw new Error('a part is already open');
    this.open = {
      number: this.nextNumber++,
      reservation,
      chunks: [],
      pool: this.poolFor(reservation.size),
      block: undefined,
      blockFill: 0,
      fillMs: 0,
    };
  }

  /** The last part (its room shrunk to its size), or undefined when no byte ever arrived. */
  finish(): HeldPart | undefined {
    const open = this.open;
    if (!open || open.reservation.held === 0) return undefined;
    open.reservation.shrinkToHeld();
    return this.cut();
  }

  /** The upload ended without finishing: the part being filled is discarded. */
  close(): void {
    this.closed = true;
    const open = this.open;
    this.open = undefined;
    if (!open) return;
    open.reservation.release();
    if (open.pool) for (let i = 0; i < open.chunks.length; i++) open.pool.drop();
  }

  private poolFor(size: number): BlockPool | undefined {
    const { pool, largePool } = this.options;
    return largePool && size >= LARGE_PART ? largePool : pool;
  }

  private async openPart(signal?: AbortSignal): Promise<void> {
    const { sizer, account } = this.options;
    const want = Math.max(1, Math.min(sizer.next, this.maxBytes));
    // Under pressure a part may shrink to api.video's minimum (or to the known rest, if smaller).
    const atLeast = Math.min(this.minPart, want);
    const reservation = await account.reserve(want, { atLeast, signal });
    if (this.closed) {
      reservation.release();
      throw new Error('the cutter is closed');
    }
    this.open = {
      number: this.nextNumber++,
      reservation,
      chunks: [],
      pool: this.poolFor(reservation.size),
      block: undefined,
      blockFill: 0,
      fillMs: 0,
    };
  }

  private write(bytes: Buffer): void {
    const open = this.open!;
    open.reservation.hold(bytes.length);
    this.maxBytes -= bytes.length;
    if (this.waitMs > 0) {
      open.fillMs += this.waitMs;
      this.waitMs = 0;
    }
    const { pool } = open;
    if (!pool) {
      open.chunks.push(bytes);
      return;
    }
    let at = 0;
    while (at < bytes.length) {
      if (!open.block || open.blockFill === open.block.length) {
        open.block = pool.take();
        open.blockFill = 0;
        open.chunks.push(open.block);
      }
      const n = bytes.copy(open.block, open.blockFill, at);
      open.blockFill += n;
      at += n;
    }
  }

  private cut(): HeldPart {
    const open = this.open!;
    this.open = undefined;
    const size = open.reservation.held;
    const { pool } = open;
    const chunks = open.chunks;
    if (pool && open.block && open.blockFill < open.block.length) {
      chunks[chunks.length - 1] = open.block.subarray(0, open.blockFill);
    }
    this.options.sizer.filled(size, open.fillMs);
    let done = false;
    const blocks = pool ? chunks.length : 0;
    const lastBlock = open.block;
    return {
      number: open.number,
      chunks,
      size,
      fillMs: open.fillMs,
      acknowledged: () => {
        if (done) return;
        done = true;
        open.reservation.release();
        if (pool) {
          for (let i = 0; i < chunks.length - 1; i++) pool.give(chunks[i]!);
          if (lastBlock) pool.give(lastBlock);
        }
      },
      discard: () => {
        if (done) return;
        done = true;
        open.reservation.release();
        if (pool) for (let i = 0; i < blocks; i++) pool.drop();
      },
    };
  }
}
