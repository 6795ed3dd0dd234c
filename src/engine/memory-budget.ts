/**
 * UPLOAD_MEMORY_BUDGET: one bound on the file bytes all uploads hold together, whatever the route,
 * and on what each upload in progress costs besides them (`chargeUpload`, UPLOAD_OVERHEAD_BYTES).
 *
 * Room is granted two ways, so that no client holds room it does not fill:
 *
 * - **Steps** (`kind: 'step'`): a few hundred KiB at a time, as an upload's bytes arrive, for a
 *   client whose pace is not known yet or that is slow. Steps come from a small pool (`stepPool`),
 *   so slow clients together can never take more than it, however many they are.
 * - **Parts** (`kind: 'part'`, the default): the rest of a part at once, for a client that keeps
 *   pace. An upload that holds a whole part's room can always finish that part without asking for
 *   more, and the parts it waits on (its own and others' in flight) need no room to finish: parts
 *   cannot deadlock, whatever the number of uploads. A part whose client falls below `minRate`
 *   while others wait gives its room back down to what it holds (`revoke`), and goes on in steps.
 *
 * When room is short, requests wait (the caller stops reading its socket: TCP backpressure) in
 * FIFO order, except that a principal past its share (`perPrincipal`) waits behind the others;
 * a wait ends when room frees, its AbortSignal fires, or `waitMs` passes (then it is refused with
 * `relay_busy`, a 503 with Retry-After: never silence). The uploads' own costs never wait and never
 * take the last `keepForParts` of the budget.
 */

import { RelayError } from '../kernel/errors';

export interface ReserveOptions {
  /** Take less than asked when that much is free (never less than this): parts shrink under pressure. */
  atLeast?: number;
  signal?: AbortSignal;
  /** A step from the small pool (a slow or new client), or the rest of a part (the default). */
  kind?: 'step' | 'part';
  /** Who asks: a principal past its share waits behind the others. */
  principal?: string;
  /**
   * The client is below `minRate` (it asks for a whole part only because the steps are all
   * taken): waiting, it does not make slow holders give their room back.
   */
  slow?: boolean;
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
  /** The most room steps may hold together (slow and new clients). Default: an eighth of the budget. */
  stepPool?: number;
  /** A principal's share of the room for parts while others wait (UPLOAD_MEMORY_PER_CLIENT). */
  perPrincipal?: number;
  /** How long a request may wait for room before it is refused (UPLOAD_MEMORY_WAIT_MS); 0: no limit. */
  waitMs?: number;
  /** Bytes a second a part's client must keep up for its room to be kept (UPLOAD_MIN_RATE). */
  minRate?: number;
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
  kind: 'step' | 'part';
  principal: string | undefined;
  slow: boolean;
  grant: (bytes: number) => void;
}

/** The room a step is: a few of the pool's blocks, so a slow client holds about what it sent. */
export const STEP_BYTES = 256 * 1024;

/** Refused after waiting `waitMs` for room: the relay is busy with other uploads. */
export function relayBusy(waitMs: number): RelayError {
  return new RelayError(
    'relay_busy',
    `Other uploads hold the relay's memory: no room came within ${Math.round(waitMs / 1000)} s. Retry shortly.`,
    { headers: { 'Retry-After': '5' } },
  );
}

export class MemoryBudget {
  private reservedBytes = 0;
  /** Room held as steps (within `stepPool`). */
  private steppedBytes = 0;
  private uploads = 0;
  private heldBytes = 0;
  private readonly waiters: Waiter[] = [];
  /** Room for parts by principal: what a share is measured against. */
  private readonly partsBy = new Map<string, number>();
  /** Parts whose clients' pace is watched while others wait (`minRate`). */
  private readonly paced = new Set<Reservation>();
  private paceTimer: NodeJS.Timeout | undefined;
  private readonly perUpload: number;
  /** The most that per-upload costs may count: the budget less `keepForParts`. */
  private readonly overheadCap: number;
  /** Every single request is capped to this, so none can wait forever for room. */
  private readonly largestRequest: number;
  readonly stepPool: number;
  readonly perPrincipal: number;
  readonly waitMs: number;
  readonly minRate: number;
  /**
   * The highest figures since start: what tests and benchmarks check the invariants against.
   * `atGrant`: parts and per-upload costs together just after room was granted (never above the
   * budget; costs alone may overdraw it between grants, see `chargeUpload`).
   */
  readonly peak = { reserved: 0, held: 0, waiting: 0, overhead: 0, atGrant: 0, stepped: 0 };
  /** Counts of what fairness did: parts whose slow client lost room, waits refused. */
  readonly counts = { revoked: 0, refused: 0 };

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
    this.stepPool = Math.min(budget, Math.max(0, options.stepPool ?? Math.floor(budget / 8)));
    this.perPrincipal = options.perPrincipal ?? budget;
    this.waitMs = options.waitMs ?? 0;
    this.minRate = options.minRate ?? 0;
  }

  get reserved(): number {
    return this.reservedBytes;
  }

  /** Room held as steps by slow and new clients. */
  get stepped(): number {
    return this.steppedBytes;
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
  account(principal?: string): BudgetAccount {
    return new BudgetAccount(this, principal);
  }

  /**
   * Resolves with the bytes granted (between `atLeast` and `bytes`) once they fit and every earlier
   * waiter is served; rejects with the signal's reason if it aborts first, or with `relay_busy`
   * after `waitMs` (nothing is then held).
   */
  reserve(bytes: number, options: ReserveOptions = {}): Promise<number> {
    const kind = options.kind ?? 'part';
    const want = Math.min(Math.max(1, Math.ceil(bytes)), this.largestRequest);
    const atLeast = Math.min(Math.max(1, Math.ceil(options.atLeast ?? want)), want);
    const { signal, principal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    const immediate = this.grantable(kind, atLeast, principal, this.waiters.length === 0);
    if (immediate) {
      const granted = Math.min(want, this.room(kind));
      this.add(granted, kind, principal);
      return Promise.resolve(granted);
    }
    return new Promise<number>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const leave = (reason: Error) => {
        const at = this.waiters.indexOf(waiter);
        if (at >= 0) this.waiters.splice(at, 1);
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        reject(reason);
        // The head may have been the one blocking smaller requests behind it.
        this.serve();
      };
      const onAbort = () => leave(signal!.reason as Error);
      const waiter: Waiter = {
        want,
        atLeast,
        kind,
        principal,
        slow: options.slow === true,
        grant: (granted) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(granted);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      if (this.waitMs > 0)
        timer = setTimeout(() => {
          this.counts.refused += 1;
          leave(relayBusy(this.waitMs));
        }, this.waitMs).unref();
      this.waiters.push(waiter);
      this.peak.waiting = Math.max(this.peak.waiting, this.waiters.length);
      this.watchPace();
    });
  }

  /** Gives back reserved room (an acknowledged part, a failed upload's parts, a last part's excess). */
  release(bytes: number, kind: 'step' | 'part' = 'part', principal?: string): void {
    if (bytes <= 0) return;
    if (bytes > this.reservedBytes)
      throw new RangeError(`releasing ${bytes} bytes but only ${this.reservedBytes} are reserved`);
    this.reservedBytes -= bytes;
    if (kind === 'step') this.steppedBytes = Math.max(0, this.steppedBytes - bytes);
    else if (principal !== undefined) {
      const left = (this.partsBy.get(principal) ?? 0) - bytes;
      if (left > 0) this.partsBy.set(principal, left);
      else this.partsBy.delete(principal);
    }
    this.serve();
  }

  /** Held bytes are reported by the accounts; kept here so the whole process's figure is one read. */
  adjustHeld(delta: number): void {
    this.heldBytes += delta;
    if (this.heldBytes > this.peak.held) this.peak.held = this.heldBytes;
  }

  /** @internal Step room becomes part room (its client showed its pace). */
  promote(bytes: number, principal: string | undefined): void {
    this.steppedBytes = Math.max(0, this.steppedBytes - bytes);
    if (principal !== undefined)
      this.partsBy.set(principal, (this.partsBy.get(principal) ?? 0) + bytes);
    this.serve();
  }

  /** @internal A part's room, watched for its client's pace while others wait. */
  pace(reservation: Reservation, watch: boolean): void {
    if (watch) this.paced.add(reservation);
    else this.paced.delete(reservation);
  }

  /** Room a step may take now. */
  get stepRoom(): number {
    return this.room('step');
  }

  /** Room a request of this kind may take now. */
  private room(kind: 'step' | 'part'): number {
    return kind === 'step' ? Math.min(this.free, this.stepPool - this.steppedBytes) : this.free;
  }

  /**
   * Whether a request may be granted now. A step may pass waiting parts (steps are small and
   * their pool is bounded); a part waits its turn unless nobody waits.
   */
  private grantable(
    kind: 'step' | 'part',
    atLeast: number,
    principal: string | undefined,
    nobodyWaits: boolean,
  ): boolean {
    if (this.room(kind) < atLeast) return false;
    return kind === 'step' || nobodyWaits;
  }

  private add(granted: number, kind: 'step' | 'part', principal: string | undefined): void {
    this.reservedBytes += granted;
    if (kind === 'step') {
      this.steppedBytes += granted;
      if (this.steppedBytes > this.peak.stepped) this.peak.stepped = this.steppedBytes;
    } else if (principal !== undefined) {
      this.partsBy.set(principal, (this.partsBy.get(principal) ?? 0) + granted);
    }
    if (this.reservedBytes > this.peak.reserved) this.peak.reserved = this.reservedBytes;
    const total = this.reservedBytes + this.overhead;
    if (total > this.peak.atGrant) this.peak.atGrant = total;
  }

  /**
   * FIFO, with two exceptions: a step is served whenever its pool has room, and a principal past
   * its share lets the others' requests go first. Otherwise a part that cannot be served blocks
   * the parts behind it, so a big request is never starved by small ones.
   */
  private serve(): void {
    let blocked = false;
    for (let i = 0; i < this.waiters.length;) {
      const waiter = this.waiters[i]!;
      const deferred = waiter.kind === 'part' && this.deferred(waiter);
      const mayTry = waiter.kind === 'step' || (!blocked && !deferred);
      if (mayTry && this.room(waiter.kind) >= waiter.atLeast) {
        this.waiters.splice(i, 1);
        const granted = Math.min(waiter.want, this.room(waiter.kind));
        this.add(granted, waiter.kind, waiter.principal);
        waiter.grant(granted);
        continue;
      }
      if (waiter.kind === 'part' && !deferred) blocked = true;
      i += 1;
    }
    if (this.waiters.length === 0) this.stopWatchingPace();
  }

  /** A principal past its share, while another principal waits for a part: it goes after them. */
  private deferred(waiter: Waiter): boolean {
    if (waiter.principal === undefined) return false;
    if ((this.partsBy.get(waiter.principal) ?? 0) + waiter.atLeast <= this.perPrincipal)
      return false;
    return this.waiters.some((w) => w.kind === 'part' && w.principal !== waiter.principal);
  }

  /** While others wait, parts whose clients fell below `minRate` give back their room. */
  private watchPace(): void {
    if (this.minRate <= 0 || this.paceTimer) return;
    this.paceTimer = setInterval(() => {
      if (this.waiters.length === 0) return this.stopWatchingPace();
      // Only for a client that keeps pace: taking room from one slow client to give it to
      // another would let neither finish.
      if (!this.waiters.some((w) => !w.slow)) return;
      for (const reservation of [...this.paced]) {
        if (reservation.tooSlow(this.minRate)) {
          this.counts.revoked += 1;
          reservation.revoke();
        }
      }
    }, 250);
    this.paceTimer.unref();
  }

  private stopWatchingPace(): void {
    clearInterval(this.paceTimer);
    this.paceTimer = undefined;
  }
}

/**
 * A reservation: room for one part, granted whole or in steps. `hold`/`unhold` follow the bytes
 * put in it; `grow` asks for more room as the part fills.
 */
export class Reservation {
  private bytes = 0;
  private heldBytes = 0;
  /** The share of `bytes` that is step room (the rest is part room, counted to the principal). */
  private steppedBytes = 0;
  private released = false;
  /** Since when its room is a whole part, and what it held then: its client's pace. */
  private pacedFrom: { at: number; held: number } | undefined;

  constructor(private readonly account: BudgetAccount) {}

  get size(): number {
    return this.bytes;
  }

  get held(): number {
    return this.heldBytes;
  }

  get room(): number {
    return this.bytes - this.heldBytes;
  }

  /** Room given as whole-part room (not steps): its client keeps pace. */
  get whole(): boolean {
    return this.steppedBytes === 0 && this.bytes > 0;
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

  /**
   * More room for this part: a step, or (`part`) the rest of the part at once, which also makes
   * the steps taken so far part room. Waits as `MemoryBudget.reserve` does.
   */
  async grow(bytes: number, options: Omit<ReserveOptions, 'principal'> = {}): Promise<number> {
    if (this.released) throw new Error('the reservation was released');
    const kind = options.kind ?? 'part';
    const granted = await this.account.take(bytes, options);
    if (this.released) {
      this.account.giveBack(granted, kind);
      throw new Error('the reservation was released');
    }
    this.bytes += granted;
    if (kind === 'step') this.steppedBytes += granted;
    else {
      if (this.steppedBytes > 0) this.account.promote(this.steppedBytes);
      this.steppedBytes = 0;
      this.pacedFrom = { at: performance.now(), held: this.heldBytes };
      this.account.pace(this, true);
    }
    return granted;
  }

  /** The part turned out smaller (the last one): gives back the room it will never use. */
  shrinkToHeld(): void {
    this.shrinkTo(this.heldBytes);
  }

  /** Gives back the room above `bytes` (never below what is held); step room goes first. */
  shrinkTo(bytes: number): void {
    const excess = this.bytes - Math.max(bytes, this.heldBytes);
    if (excess <= 0 || this.released) return;
    this.bytes -= excess;
    const steps = Math.min(excess, this.steppedBytes);
    this.steppedBytes -= steps;
    this.account.giveBack(steps, 'step');
    this.account.giveBack(excess - steps, 'part');
  }

  /** Its client fell below `minRate` since its room became a whole part (and had time to show it). */
  tooSlow(minRate: number): boolean {
    if (!this.pacedFrom || this.room === 0) return false;
    const seconds = (performance.now() - this.pacedFrom.at) / 1000;
    // Given long enough to send a step at the least rate, so a burst's gap is not mistaken.
    if (seconds < STEP_BYTES / minRate) return false;
    return (this.heldBytes - this.pacedFrom.held) / seconds < minRate;
  }

  /** Its room shrinks to what it holds: the part goes on in steps, as a slow client's does. */
  revoke(): void {
    this.pacedFrom = undefined;
    this.account.pace(this, false);
    this.shrinkTo(this.heldBytes);
  }

  /** The bytes are gone (acknowledged, or the upload failed): room and bytes go back. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.account.pace(this, false);
    this.account.adjustHeld(-this.heldBytes);
    this.heldBytes = 0;
    const steps = this.steppedBytes;
    this.steppedBytes = 0;
    this.account.forget(this, this.bytes - steps, steps);
    this.bytes = 0;
  }
}

/** One upload's reservations; `close()` releases whatever is left (the upload ended, however). */
export class BudgetAccount {
  private readonly open = new Set<Reservation>();
  private reservedBytes = 0;
  private heldBytes = 0;
  private waits = 0;

  constructor(
    private readonly budget: MemoryBudget,
    /** Who uploads: shares of the budget are per principal. */
    readonly principal?: string,
  ) {}

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

  /** The least rate a part's client must keep up to hold its room whole (0: no such rule). */
  get minRate(): number {
    return this.budget.minRate;
  }

  /** Room a step may take now. */
  get stepRoom(): number {
    return this.budget.stepRoom;
  }

  /** New room: a whole part by default, or (`kind: 'step'`) a step of a part still filling. */
  async reserve(
    bytes: number,
    options: Omit<ReserveOptions, 'principal'> = {},
  ): Promise<Reservation> {
    const reservation = new Reservation(this);
    this.open.add(reservation);
    try {
      await reservation.grow(bytes, options);
    } catch (err) {
      this.open.delete(reservation);
      throw err;
    }
    return reservation;
  }

  /** Releases every reservation still open. Idempotent. */
  close(): void {
    for (const reservation of [...this.open]) reservation.release();
  }

  /** @internal */
  async take(bytes: number, options: Omit<ReserveOptions, 'principal'>): Promise<number> {
    this.waits += 1;
    try {
      const granted = await this.budget.reserve(bytes, { ...options, principal: this.principal });
      this.reservedBytes += granted;
      return granted;
    } finally {
      this.waits -= 1;
    }
  }

  /** @internal */
  adjustHeld(delta: number): void {
    this.heldBytes += delta;
    this.budget.adjustHeld(delta);
  }

  /** @internal */
  giveBack(bytes: number, kind: 'step' | 'part'): void {
    if (bytes <= 0) return;
    this.reservedBytes -= bytes;
    this.budget.release(bytes, kind, this.principal);
  }

  /** @internal */
  promote(bytes: number): void {
    this.budget.promote(bytes, this.principal);
  }

  /** @internal */
  pace(reservation: Reservation, watch: boolean): void {
    this.budget.pace(reservation, watch);
  }

  /** @internal */
  forget(reservation: Reservation, partBytes: number, stepBytes: number): void {
    if (!this.open.delete(reservation)) return;
    this.giveBack(stepBytes, 'step');
    this.giveBack(partBytes, 'part');
  }
}
