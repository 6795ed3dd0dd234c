/** A part as the engine sends it: its bytes as a list of buffers, never joined into one. */
export interface Part {
  number: number;
  chunks: Buffer[];
  size: number;
}

export type SendPart<T> = (part: Part, isLast: boolean) => Promise<T>;

/**
 * Keeps up to `concurrency` parts in flight. The last part goes only after every earlier one is
 * acknowledged, because api.video completes the video on the part labelled N/N. The first failure
 * is kept and reported once through `onFailure`, so the caller can stop reading and abort the rest.
 */
export class PartQueue<T> {
  private readonly inFlight = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;

  constructor(
    private readonly concurrency: number,
    private readonly sendPart: SendPart<T>,
    private readonly onFailure: (error: unknown) => void,
  ) {}

  get size(): number {
    return this.inFlight.size;
  }

  /** Resolves when another part may be sent; rejects once a part has failed. */
  async room(): Promise<void> {
    while (this.inFlight.size >= this.concurrency && !this.failure)
      await Promise.race(this.inFlight);
    this.throwIfFailed();
  }

  /** Sends a part that is not the last; call only after `room()` resolved. */
  send(part: Part): void {
    const sent: Promise<void> = this.sendPart(part, false).then(
      () => undefined,
      (error: unknown) => this.fail(error),
    );
    const tracked = sent.finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  /** Waits for every earlier part, then sends the last one and returns its answer. */
  async finish(last: Part): Promise<T> {
    await this.settle();
    this.throwIfFailed();
    return this.sendPart(last, true);
  }

  /** Resolves when nothing is in flight (failures are kept, not thrown). */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
  }

  private fail(error: unknown): void {
    if (this.failure) return;
    this.failure = { error };
    this.onFailure(error);
  }

  /** Throws the first failure, if any. */
  throwIfFailed(): void {
    if (this.failure) throw this.failure.error;
  }
}
