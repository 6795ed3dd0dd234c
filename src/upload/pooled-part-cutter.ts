import type { Cutter, Part } from './part-cutter';

/**
 * Cuts a byte stream into parts like PartCutter, but copies the bytes into part-size buffers that
 * are reused once their part is acknowledged. The client's chunks then die young (cheap for the
 * GC) instead of living as long as their part, and memory per upload is at most
 * `buffers × partSize` plus one chunk. Same contract: a full part is released only once a further
 * byte has arrived, so `finish()` returns the real last part, never an empty one.
 */
export class PooledPartCutter implements Cutter {
  private readonly free: Buffer[] = [];
  private allocated = 0;
  private current: Buffer | undefined;
  private filled = 0;
  /** Bytes that arrived while no buffer was free, held by reference until one is. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private nextNumber = 1;
  private full = false;

  constructor(
    private readonly partSize: number,
    private readonly maxBuffers: number,
  ) {}

  /** Adds a chunk; returns the parts now known not to be the last (at most one per call in practice). */
  push(chunk: Buffer): Part[] {
    if (chunk.length === 0) return [];
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    return this.drain();
  }

  /** Gives a released part's buffer back for reuse, once api.video has it. */
  recycle(part: Part): void {
    if (part.buffer) this.free.push(part.buffer);
  }

  /** The last part, or undefined when no byte ever arrived. */
  finish(): Part | undefined {
    const chunks = [
      ...(this.current && this.filled > 0 ? [this.current.subarray(0, this.filled)] : []),
      ...this.pending,
    ];
    const size = this.filled + this.pendingBytes;
    if (size === 0) return undefined;
    const part: Part = { number: this.nextNumber++, chunks, size, buffer: this.current };
    this.current = undefined;
    this.filled = 0;
    this.pending = [];
    this.pendingBytes = 0;
    return part;
  }

  private drain(): Part[] {
    const released: Part[] = [];
    for (;;) {
      if (this.full) {
        // The current part is full and more bytes exist: it is not the last one.
        released.push({
          number: this.nextNumber++,
          chunks: [this.current!],
          size: this.partSize,
          buffer: this.current,
        });
        this.current = undefined;
        this.filled = 0;
        this.full = false;
      }
      if (this.pendingBytes === 0) return released;
      this.current ??= this.take();
      if (!this.current) return released; // all buffers in flight: keep the bytes by reference
      this.copyPending();
      if (this.filled === this.partSize) this.full = this.pendingBytes > 0;
      if (!this.full) return released;
    }
  }

  private copyPending(): void {
    while (this.pending.length > 0 && this.filled < this.partSize) {
      const head = this.pending[0]!;
      const n = head.copy(
        this.current!,
        this.filled,
        0,
        Math.min(head.length, this.partSize - this.filled),
      );
      this.filled += n;
      this.pendingBytes -= n;
      if (n === head.length) this.pending.shift();
      else this.pending[0] = head.subarray(n);
    }
  }

  private take(): Buffer | undefined {
    const reused = this.free.pop();
    if (reused) return reused;
    if (this.allocated >= this.maxBuffers) return undefined;
    this.allocated += 1;
    // Not from Node's shared pool, and not zeroed: every byte is written before it is sent.
    return Buffer.allocUnsafeSlow(this.partSize);
  }
}
