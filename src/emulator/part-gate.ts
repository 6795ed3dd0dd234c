/**
 * Holds part requests, their bodies read, until a test lets them go. A test can then count the
 * parts a relay has in flight, or keep an upload in progress for as long as it needs, by waiting on
 * these events instead of on a slow upstream's timer (which a loaded machine outruns or lags).
 */
export class PartGate {
  private closed = false;
  private readonly queue: Array<{ contentRange: string | null; release: () => void }> = [];
  private readonly watchers = new Set<() => void>();

  /** From now on, part requests wait in the gate. */
  hold(): void {
    this.closed = true;
  }

  /** Lets every waiting part through, and the ones after them. */
  open(): void {
    this.closed = false;
    for (const waiting of this.queue.splice(0)) waiting.release();
    this.changed();
  }

  /** Lets the part that arrived first through; the gate stays closed to the others. */
  releaseOne(): void {
    const first = this.queue.shift();
    if (!first) throw new Error('no part is waiting in the gate');
    first.release();
    this.changed();
  }

  /** Lets the first waiting part with this Content-Range through; the others keep waiting. */
  release(contentRange: string): void {
    const at = this.queue.findIndex((w) => w.contentRange === contentRange);
    if (at < 0)
      throw new Error(`no part "${contentRange}" is waiting in the gate: ${this.held.join(', ')}`);
    this.queue.splice(at, 1)[0]!.release();
    this.changed();
  }

  /** The Content-Range of each waiting part, in arrival order. */
  get held(): Array<string | null> {
    return this.queue.map((w) => w.contentRange);
  }

  /** Resolves once at least `count` parts wait; rejects after `timeoutMs` with what did arrive. */
  waitForHeld(count: number, timeoutMs = 20_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.queue.length < count) return;
        this.watchers.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.watchers.delete(check);
        reject(new Error(`${count} parts never waited in the gate together: ${this.held.length}`));
      }, timeoutMs);
      this.watchers.add(check);
      check();
    });
  }

  /** For the part handler: resolves when the part may be answered (at once while the gate is open). */
  pass(contentRange: string | null, gone: AbortSignal): Promise<void> {
    if (!this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const waiting = { contentRange, release: resolve };
      this.queue.push(waiting);
      // A part whose relay gave up (an abort, a shutdown) leaves the gate.
      gone.addEventListener('abort', () => {
        const at = this.queue.indexOf(waiting);
        if (at >= 0) this.queue.splice(at, 1);
        this.changed();
        resolve();
      });
      this.changed();
    });
  }

  private changed(): void {
    for (const watcher of [...this.watchers]) watcher();
  }
}
