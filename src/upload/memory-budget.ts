/**
 * UPLOAD_MEMORY_BUDGET: one bound on the file bytes all uploads hold together, whatever the route.
 *
 * Room is reserved by part, not by byte: an upload reserves its next part's size before it holds
 * the part's first byte, so an upload that holds an unfinished part can always finish it without
 * asking for more. Waiting for room happens only between parts, when the upload holds no unfinished
 * part, and the parts it waits on (its own and others' in flight) need no room to finish: no cycle,
 * no deadlock, whatever the number of uploads against the number of part slots.
 *
 * When the budget is used up, uploads wait in FIFO order (the caller stops reading its socket: TCP
 * backpressure) instead of being refused; a wait ends when room frees or its AbortSignal fires.
 */
export interface ReserveOptions {
  /** Take less than asked when that much is free (never less than this): parts shrink under pressure. */
  atLeast?: number;
  signal?: AbortSignal;
}

export interface BudgetSnapshot {
  budget: number;
  /** Bytes reserved: what counts against the budget. */
  reserved: number;
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
  private heldBytes = 0;
  private readonly waiters: Waiter[] = [];
  /** The highest figures since start: what tests and benchmarks check the invariants against. */
  readonly peak = { reserved: 0, held: 0, waiting: 0 };

  /** `budget`: bytes; every single request is capped to it, so none can wait forever for room. */
  constructor(readonly budget: number) {
    if (!(budget > 0)) throw new RangeError(`a memory budget must be positive, got ${budget}`);
  }

  get reserved(): number {
    return this.reservedBytes;
  }

  /** Alias of `reserved`: the part of the budget in use. */
  get used(): number {
    return this.reservedBytes;
  }

  get held(): number {
    return this.heldBytes;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  get free(): number {
    return this.budget - this.reservedBytes;
  }

  snapshot(): BudgetSnapshot {
    return {
      budget: this.budget,
      reserved: this.reservedBytes,
      held: this.heldBytes,
      waiting: this.waiters.length,
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
    const want = Math.min(Math.max(1, Math.ceil(bytes)), this.budget);
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
    const excess = this.bytes - this.heldBytes;
    if (excess <= 0 || this.released) return;
    this.bytes = this.heldBytes;
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
