import type { BlockPool } from './block-pool';
import { STEP_BYTES, type BudgetAccount, type Reservation } from './memory-budget';
import { type PartSizer } from './part-size';
import { MIN_PART_SIZE } from '../kernel/sizes';

/** Parts from this size on use the large blocks (a client fast enough to have grown its parts). */
const LARGE_PART = 8 * 1024 * 1024;

/** A part cut from the stream, holding its room in the budget until it is let go. */
export interface HeldPart {
  number: number;
  /** Where the part starts in the file. */
  from: number;
  /** The ledger bound this number to these bytes already (a part sent before, sent again). */
  bound: boolean;
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
  /** A resumed upload goes on from its next part ... */
  firstNumber?: number;
  /** ... which starts at this byte of the file. */
  startAt?: number;
  /**
   * What the part ledger says of a part number already on the wire: it must be cut to exactly
   * that size again, or (acknowledged beyond a gap) its bytes are passed over, not held or sent.
   * Undefined: a part never sent, sized by the sizer.
   */
  recorded?: (number: number) => { size: number; acknowledged: boolean } | undefined;
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
  from: number;
  bound: boolean;
  /** The size it is filled to: the ledger's for a part sent before, else the sizer's. */
  target: number;
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
  /** Bytes still to pass over of an acknowledged part (its number is already counted). */
  private skipping = 0;
  private nextNumber: number;
  /** Where the next byte pushed goes in the file. */
  private position: number;
  private maxBytes: number;
  private readonly minPart: number;
  private waitMs = 0;
  private closed = false;
  /** The last part cut was filled at least at the budget's least rate: room a part at a time. */
  private keptPace = false;

  constructor(private readonly options: BudgetedCutterOptions) {
    this.nextNumber = options.firstNumber ?? 1;
    this.position = options.startAt ?? 0;
    this.maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
    this.minPart = options.minPart ?? MIN_PART_SIZE;
  }

  /** Bytes held in the part being filled (not yet handed on). */
  get pendingBytes(): number {
    return this.open?.reservation.held ?? 0;
  }

  /** The size the next part will be filled to (the ledger's, or the sizer's within the known rest). */
  get nextTarget(): number {
    const recorded = this.options.recorded?.(this.nextNumber);
    return recorded ? recorded.size : Math.max(1, Math.min(this.options.sizer.next, this.maxBytes));
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
      if (this.skipping > 0) {
        const n = Math.min(rest.length, this.skipping);
        this.skipping -= n;
        this.position += n;
        this.maxBytes -= n;
        rest = rest.subarray(n);
        continue;
      }
      if (this.open && this.open.reservation.held === this.open.target) {
        // More bytes exist, so it is not the last part, and api.video wants it >= 5 MiB. Smaller
        // is only reachable if maxBytes was not an upper bound (the caller's bug).
        if (this.open.reservation.held < this.minPart) {
          this.close();
          throw new RangeError('more bytes arrived than the upload was said to have');
        }
        await release(this.cut());
        continue;
      }
      if (!this.open) {
        if (this.skipRecorded()) continue;
        await this.openPart(signal);
        continue;
      }
      if (this.open.reservation.room === 0) await this.grow(this.open, signal);
      const n = Math.min(rest.length, this.open.reservation.room);
      this.write(n === rest.length ? rest : rest.subarray(0, n));
      rest = rest.subarray(n);
    }
  }

  /**
   * Room for more of the open part: the rest of it at once for a client that keeps pace (or a part
   * sent before, whose size is fixed), a step for one that does not or has not shown it yet.
   */
  private async grow(open: OpenPart, signal?: AbortSignal): Promise<void> {
    const { reservation } = open;
    const rest = open.target - reservation.size;
    const paced = open.bound || this.keepsPace(open);
    const step = Math.min(STEP_BYTES, rest);
    if (!paced && this.options.account.stepRoom >= step) {
      await reservation.grow(step, { kind: 'step', signal });
      return;
    }
    // A client that keeps pace, a part sent before, or a slow client once steps are all taken
    // (it then waits its turn for the rest of its part, as anyone does, and holding a whole
    // part it can always finish it: slow clients cannot block each other for good).
    const atLeast = open.bound
      ? rest
      : Math.max(1, Math.min(rest, this.minPart - reservation.size));
    await reservation.grow(rest, { kind: 'part', atLeast, signal, slow: !paced });
    // Under pressure a new part shrinks (never below api.video's minimum, or its known rest).
    if (reservation.size < open.target) open.target = reservation.size;
  }

  /** Whether the open part's client sends at least the budget's least rate (once it has shown it). */
  private keepsPace(open: OpenPart): boolean {
    const minRate = this.options.account.minRate;
    if (minRate <= 0) return true;
    const held = open.reservation.held;
    if (held < STEP_BYTES && open.fillMs < 1000) return false;
    return (held / Math.max(open.fillMs, 1)) * 1000 >= minRate;
  }

  /**
   * Makes room reserved elsewhere (empty) the next part's: a resumed upload reserves before it
   * loads the bytes it carried over, so they are never held unreserved.
   */
  adopt(reservation: Reservation): void {
    if (this.open) throw new Error('a part is already open');
    const recorded = this.options.recorded?.(this.nextNumber);
    if (recorded?.acknowledged) return reservation.release();
    const target = recorded
      ? recorded.size
      : Math.max(1, Math.min(this.options.sizer.next, this.maxBytes), reservation.size);
    // A part sent before is exactly its size again: room beyond it goes back.
    reservation.shrinkTo(target);
    this.begin(reservation, target, recorded !== undefined);
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

  /** At an acknowledged part of the ledger: its bytes are passed over. */
  private skipRecorded(): boolean {
    const recorded = this.options.recorded?.(this.nextNumber);
    if (!recorded?.acknowledged) return false;
    this.nextNumber += 1;
    this.skipping = recorded.size;
    return true;
  }

  private async openPart(signal?: AbortSignal): Promise<void> {
    const { sizer, account } = this.options;
    const recorded = this.options.recorded?.(this.nextNumber);
    // A part number already sent is cut to the same bytes again, whatever the budget or the sizer.
    const target = recorded ? recorded.size : Math.max(1, Math.min(sizer.next, this.maxBytes));
    // Room a part at a time for a part sent before, a client that kept pace with the last part,
    // or when slow clients already hold all the room steps may take; else a step to begin with.
    const whole =
      recorded !== undefined ||
      account.minRate <= 0 ||
      this.keptPace ||
      account.stepRoom < Math.min(STEP_BYTES, target);
    const reservation = whole
      ? await account.reserve(target, {
          // Under pressure a new part may shrink to api.video's minimum (or to the known rest).
          atLeast: recorded ? target : Math.min(this.minPart, target),
          signal,
        })
      : await account.reserve(Math.min(STEP_BYTES, target), { kind: 'step', signal });
    if (this.closed) {
      reservation.release();
      throw new Error('the cutter is closed');
    }
    this.begin(
      reservation,
      whole && !recorded ? Math.min(target, reservation.size) : target,
      recorded !== undefined,
    );
  }

  /** The next part opens at the current position, in this room, to be filled to `target`. */
  private begin(reservation: Reservation, target: number, bound: boolean): void {
    this.open = {
      number: this.nextNumber++,
      from: this.position,
      bound,
      target,
      reservation,
      chunks: [],
      pool: this.poolFor(target),
      block: undefined,
      blockFill: 0,
      fillMs: 0,
    };
  }

  private write(bytes: Buffer): void {
    const open = this.open!;
    open.reservation.hold(bytes.length);
    this.maxBytes -= bytes.length;
    this.position += bytes.length;
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
    const minRate = this.options.account.minRate;
    this.keptPace = minRate <= 0 || (size / Math.max(open.fillMs, 1)) * 1000 >= minRate;
    let done = false;
    const blocks = pool ? chunks.length : 0;
    const lastBlock = open.block;
    return {
      number: open.number,
      from: open.from,
      bound: open.bound,
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
