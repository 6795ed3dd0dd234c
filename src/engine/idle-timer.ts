/**
 * Fires when the client has sent nothing for `ms` while the relay was waiting for it. Time spent
 * with reading paused (backpressure from a slow upstream) does not count: that wait is ours.
 * One timer, refreshed per chunk, keeps the byte path cheap.
 */
export class IdleTimer {
  private timer: NodeJS.Timeout | undefined;
  private waiting = false;

  constructor(
    private readonly ms: number,
    private readonly onIdle: () => void,
  ) {}

  /** Starts counting: the relay is now waiting for the client's next bytes. */
  arm(): void {
    if (this.ms <= 0) return;
    this.waiting = true;
    if (this.timer) this.timer.refresh();
    else this.timer = setTimeout(() => this.waiting && this.onIdle(), this.ms).unref();
  }

  disarm(): void {
    this.waiting = false;
  }

  dispose(): void {
    this.waiting = false;
    clearTimeout(this.timer);
  }
}
