/**
 * UPLOAD_MEMORY_BUDGET: one bound on the file bytes all uploads hold together, whatever the route,
 * and on what each upload in progress costs besides them (`chargeUpload`, UPLOAD_OVERHEAD_BYTES).
 *
 * Room is reserved by part, not by byte: an upload reserves its next part's size before it holds
 * the part's first byte, so an upload that holds an unfinished part can always finish it without
 * asking for more. Waiting for room happens only between parts, when the upload holds no unfinished
 * part, and the parts it waits on (its own and others' in flight) need no room to finish: no cycle,
 * no deadlock, whatever the number of uploads against the number of part slots. The uploads' own
 * costs never wait and never take the last `keepForParts` of the budget, so they cannot close that
 * loop: however many uploads wait (each with its cost counted), parts in flight drain into room.
 *
 * When the budget is used up, uploads wait in FIFO order (the caller stops reading its socket: TCP
 * backpressure) instead of being refused; a wait ends when room frees or its AbortSignal fires.
 */

/**
 * What the relay counts against the budget for each upload in progress, besides its file bytes:
 * its socket reads and the streams' 16 KiB buffers, the request, parser and engine objects in V8's
 * heap, the allocator's share. Measured with 1000 slow uploads (docs/performance-notes.md, "Many
 * slow clients"): 130 to 190 KiB each beyond the blocks holding their file bytes, of which a fixed
 * part (the blocks the pool keeps, V8's young generation) does not grow with their number. Counted
 * in the budget, RSS stays near the budget whatever the number of uploads, instead of the budget
 * plus 16 to 20 % at 1000.
 */
export const UPLOAD_OVERHEAD_BYTES = 128 * 1024;

export interface ReserveOptions {
  /** Take less than asked when that much is free (never less than this): parts shrink under pressure. */
  atLeast?: number;
  signal?: AbortSignal;
}

export interface MemoryBudgetOptions {
  /**
   * What an upload in progress costs the process besides its file bytes (its socket reads, the
   * streams' buffers, the request and parser in V8's heap), counted against the budget from its
   * admission to its response's end, waiting or not. 0: the budget counts file bytes only.
   */
  perUpload?: number;
  /**
   * Room the per-upload costs never take (the app: two parts of UPLOAD_PART_SIZE), so that however
   * many uploads are in progress, parts can always get room once others drain. Single reservations
   * are capped to it.
   */
  keepForParts?: number;
}

export interface BudgetSnapshot {
  budget: number;
  /** Bytes reserved by parts: what counts against the budget besides the uploads' own costs. */
  reserved: number;
  /** Bytes counted for uploads in progress besides their file bytes (`perUpload` each, capped). */
  overhead: number;
  /** Bytes actually held in reserved room (reported by the holders); never above `reserved`. */
  held: number;
  /** Reservations waiting for room. */
  waiting: number;
}

interface Waiter {
  want: number;
  atLeast: number;
  grant: (bytes: number) => void;
}

export class MemoryBudget {
  private reservedBytes = 0;
  private uploads = 0;
  private heldBytes = 0;
  private readonly waiters: Waiter[] = [];
  private readonly perUpload: number;
  /** The most that per-upload costs may count: the budget less `keepForParts`. */
  private readonly overheadCap: number;
  /** Every single request is capped to this, so none can wait forever for room. */
  private readonly largestRequest: number;
  /**
   * The highest figures since start: what tests and benchmarks check the invariants against.
   * `atGrant`: parts and per-upload costs together just after room was granted (never above the
   * budget; costs alone may overdraw it between grants, see `chargeUpload`).
   */
  readonly peak = { reserved: 0, held: 0, waiting: 0, overhead: 0, atGrant: 0 };

  /** `budget`: bytes. */
  constructor(
    readonly budget: number,
    options: MemoryBudgetOptions = {},
  ) {
    if (!(budget > 0)) throw new RangeError(`a memory budget must be positive, got ${budget}`);
    const perUpload = options.perUpload ?? 0;
    const keep = options.keepForParts ?? budget;
    if (!(perUpload >= 0) || !Number.isFinite(perUpload))
      throw new RangeError(`perUpload must be a byte count, got ${perUpload}`);
    if (!(keep > 0) || !Number.isFinite(keep))
      throw new RangeError(`keepForParts must be a positive byte count, got ${keep}`);
    // Without it the costs could take the whole budget (or, capped at 0, count nothing).
    if (perUpload > 0 && options.keepForParts === undefined)
      throw new RangeError('perUpload needs keepForParts: the room the costs never take');
    this.perUpload = Math.ceil(perUpload);
    this.largestRequest = Math.min(budget, Math.ceil(keep));
    this.overheadCap = budget - this.largestRequest;
  }

  get reserved(): number {
    return this.reservedBytes;
  }

  /** The part of the budget in use: parts and the uploads' own costs. */
  get used(): number {
    return this.reservedBytes + this.overhead;
  }

  get held(): number {
    return this.heldBytes;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** Bytes counted for uploads in progress besides their file bytes. */
  get overhead(): number {
    return Math.min(this.uploads * this.perUpload, this.overheadCap);
  }

  /** How many uploads in progress the costs count before they reach their cap. */
  get uploadsCounted(): number {
    return this.perUpload > 0 ? Math.floor(this.overheadCap / this.perUpload) : 0;
  }

  /** Room for parts; negative while uploads that arrived when it was used up overdraw it. */
  get free(): number {
    return this.budget - this.reservedBytes - this.overhead;
  }

  snapshot(): BudgetSnapshot {
    return {
      budget: this.budget,
      reserved: this.reservedBytes,
      overhead: this.overhead,
      held: this.heldBytes,
      waiting: this.waiters.length,
    };
  }

  /**
   * Counts one upload's cost besides its file bytes until the returned function is called (once
   * its response ended, however). Never waits: the connection exists already, and
   * UPLOAD_MAX_CONCURRENT bounds how many do. An upload that arrives while the budget is used up
   * overdraws it, and no part gets room until parts and costs are back within it. The costs count
   * every upload in progress up to the budget less `keepForParts`, so parts always can get room
   * once others drain.
   */
  chargeUpload(): () => void {
    if (this.perUpload === 0 || this.overheadCap === 0) return () => {};
    this.uploads += 1;
    if (this.overhead > this.peak.overhead) this.peak.overhead = this.overhead;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.uploads -= 1;
      this.serve();
    };
  }

  /** A holder's own view: its reservations, released together when it ends. */
  account(): BudgetAccount {
    return new BudgetAccount(this);
  }

  /**
   * Resolves with the bytes granted (between `atLeast` and `bytes`) once they fit and every earlier
   * waiter is served; rejects with the signal's reason if it aborts first (nothing is then held).
   */
  reserve(bytes: number, options: ReserveOptions = {}): Promise<number> {
    const want = Math.min(Math.max(1, Math.ceil(bytes)), this.largestRequest);
    const atLeast = Math.min(Math.max(1, Math.ceil(options.atLeast ?? want)), want);
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    if (this.waiters.length === 0 && this.free >= atLeast) {
      const granted = Math.min(want, this.free);
      this.add(granted);
      return Promise.resolve(granted);
    }
    return new Promise<number>((resolve, reject) => {
      const onAbort = () => {
        const at = this.waiters.indexOf(waiter);
        if (at >= 0) this.waiters.splice(at, 1);
        reject(signal!.reason as Error);
        // The head may have been the one blocking smaller requests behind it.
        this.serve();
      };
      const waiter: Waiter = {
        want,
        atLeast,
        grant: (granted) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(granted);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      this.peak.waiting = Math.max(this.peak.waiting, this.waiters.length);
    });
  }

  /** Gives back reserved room (an acknowledged part, a failed upload's parts, a last part's excess). */
  release(bytes: number): void {
    if (bytes <= 0) return;
    if (bytes > this.reservedBytes)
      throw new RangeError(`releasing ${bytes} bytes but only ${this.reservedBytes} are reserved`);
    this.reservedBytes -= bytes;
    this.serve();
  }

  /** Held bytes are reported by the accounts; kept here so the whole process's figure is one read. */
  adjustHeld(delta: number): void {
    this.heldBytes += delta;
    if (this.heldBytes > this.peak.held) this.peak.held = this.heldBytes;
  }

  private add(granted: number): void {
    this.reservedBytes += granted;
    if (this.reservedBytes > this.peak.reserved) this.peak.reserved = this.reservedBytes;
    const total = this.reservedBytes + this.overhead;
    if (total > this.peak.atGrant) this.peak.atGrant = total;
  }

  /** Strict FIFO: the head is served first, so a big request is never starved by small ones. */
  private serve(): void {
    while (this.waiters.length > 0) {
      const head = this.waiters[0]!;
      if (this.free < head.atLeast) return;
      this.waiters.shift();
      const granted = Math.min(head.want, this.free);
      this.add(granted);
      head.grant(granted);
    }
  }
}

/** A reservation: room for one part. `hold`/`drop` follow the bytes put in it. */
export class Reservation {
  private heldBytes = 0;
  private released = false;

  constructor(
    private readonly account: BudgetAccount,
    private bytes: number,
  ) {}

  get size(): number {
    return this.bytes;
  }

  get held(): number {
    return this.heldBytes;
  }

  get room(): number {
    return this.bytes - this.heldBytes;
  }

  /** Records bytes put in this room; more than the room left is a bug in the caller. */
  hold(n: number): void {
    if (n > this.room) throw new RangeError(`holding ${n} bytes in a room of ${this.room}`);
    this.heldBytes += n;
    this.account.adjustHeld(n);
  }

  /** The bytes held here moved on (into a part that adopts this room): the room stays reserved. */
  unhold(): void {
    this.account.adjustHeld(-this.heldBytes);
    this.heldBytes = 0;
  }

  /** The part turned out smaller (the last one): gives back the room it will never use. */
  shrinkToHeld(): void {
    this.shrinkTo(this.heldBytes);
  }

  /** Gives back the room above `bytes` (never below what is held). */
  shrinkTo(bytes: number): void {
    const excess = this.bytes - Math.max(bytes, this.heldBytes);
    if (excess <= 0 || this.released) return;
    this.bytes -= excess;
    this.account.giveBack(excess);
  }

  /** The bytes are gone (acknowledged, or the upload failed): room and bytes go back. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.account.adjustHeld(-this.heldBytes);
    this.heldBytes = 0;
    this.account.forget(this);
  }
}

/** One upload's reservations; `close()` releases whatever is left (the upload ended, however). */
export class BudgetAccount {
  private readonly open = new Set<Reservation>();
  private reservedBytes = 0;
  private heldBytes = 0;
  private waits = 0;

  constructor(private readonly budget: MemoryBudget) {}

  /** Room reserved by this upload. */
  get reserved(): number {
    return this.reservedBytes;
  }

  /** Bytes this upload holds in its reserved room. */
  get held(): number {
    return this.heldBytes;
  }

  /** True while this upload waits for room: our wait, not the client's (the idle timer is off). */
  get waiting(): boolean {
    return this.waits > 0;
  }

  async reserve(bytes: number, options: ReserveOptions = {}): Promise<Reservation> {
    this.waits += 1;
    try {
      const granted = await this.budget.reserve(bytes, options);
      this.reservedBytes += granted;
      const reservation = new Reservation(this, granted);
      this.open.add(reservation);
      return reservation;
    } finally {
      this.waits -= 1;
    }
  }

  /** Releases every reservation still open. Idempotent. */
  close(): void {
    for (const reservation of [...this.open]) reservation.release();
  }

  /** @internal */
  adjustHeld(delta: number): void {
    this.heldBytes += delta;
    this.budget.adjustHeld(delta);
  }

  /** @internal */
  giveBack(bytes: number): void {
    this.reservedBytes -= bytes;
    this.budget.release(bytes);
  }

  /** @internal */
  forget(reservation: Reservation): void {
    if (!this.open.delete(reservation)) return;
    this.giveBack(reservation.size);
  }
}
