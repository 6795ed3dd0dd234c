/** A part as the relay holds it: the chunks the client sent, never joined into one buffer. */
export interface Part {
  number: number;
  chunks: Buffer[];
  size: number;
  /** The pooled buffer holding the bytes, to reuse once the part is acknowledged. */
  buffer?: Buffer;
}

/** What the upload needs of a cutter: bytes in, parts out, buffers back. */
export interface Cutter {
  push(chunk: Buffer): Part[];
  finish(): Part | undefined;
  recycle(part: Part): void;
}

/**
 * Cuts a byte stream into parts of exactly `partSize` bytes. A full part is released only once a
 * further byte has arrived, so the part `finish()` returns is really the last one: it can be
 * labelled `part N/N`, and no empty part is ever produced, even when the length is an exact
 * multiple of the part size.
 */
export class PartCutter implements Cutter {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private nextNumber: number;

  /** `firstNumber`: a resumed upload goes on from its next part. */
  constructor(
    private readonly partSize: number,
    firstNumber = 1,
  ) {
    this.nextNumber = firstNumber;
  }

  /** Bytes held and not yet released as a part. */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** Adds a chunk; returns the parts now known not to be the last (usually none, sometimes one). */
  push(chunk: Buffer): Part[] {
    if (chunk.length === 0) return [];
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const released: Part[] = [];
    while (this.buffered > this.partSize) released.push(this.cut(this.partSize));
    return released;
  }

  /** The last part, or undefined when no byte ever arrived. */
  finish(): Part | undefined {
    return this.buffered === 0 ? undefined : this.cut(this.buffered);
  }

  /** Nothing to reuse: the chunks are the client's, and the GC takes them back. */
  recycle(): void {}

  private cut(size: number): Part {
    const taken: Buffer[] = [];
    let need = size;
    while (need > 0) {
      const head = this.chunks[0]!;
      if (head.length <= need) {
        taken.push(head);
        this.chunks.shift();
        need -= head.length;
      } else {
        // subarray shares memory with the chunk: the cut costs no copy.
        taken.push(head.subarray(0, need));
        this.chunks[0] = head.subarray(need);
        need = 0;
      }
    }
    this.buffered -= size;
    return { number: this.nextNumber++, chunks: taken, size };
  }
}
