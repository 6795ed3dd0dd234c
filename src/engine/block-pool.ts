/**
 * Fixed-size blocks shared by all uploads. A part is copied into blocks as its bytes arrive, so an
 * upload holds what it has received rounded up to one block (not a whole part-size buffer taken
 * up front), the client's chunks die young (cheap for the GC, and no long-lived small pieces of
 * half-freed read buffers pinning the heap), and a fast client copies into warm, reused memory.
 *
 * 256 KiB, above glibc's 128 KiB mmap threshold: each block is its own mapping, so a block the pool
 * lets go returns to the kernel once collected; smaller blocks come from the main heap and keep
 * RSS up after a burst (docs/performance-notes.md).
 */
export const DEFAULT_BLOCK_SIZE = 256 * 1024;

export class BlockPool {
  private readonly free: Buffer[] = [];
  private readonly maxFree: number;
  private allocatedBlocks = 0;

  /** `maxFreeBytes`: how much idle memory to keep for reuse; blocks beyond go back to the GC. */
  constructor(
    readonly blockSize = DEFAULT_BLOCK_SIZE,
    maxFreeBytes = 64 * 1024 * 1024,
  ) {
    this.maxFree = Math.floor(maxFreeBytes / blockSize);
  }

  /** Blocks ever allocated and not yet dropped (in use or kept free). */
  get allocated(): number {
    return this.allocatedBlocks;
  }

  get freeBlocks(): number {
    return this.free.length;
  }

  take(): Buffer {
    const reused = this.free.pop();
    if (reused) return reused;
    this.allocatedBlocks += 1;
    // Not from Node's shared 8 KiB pool, and not zeroed: every byte sent is written first.
    return Buffer.allocUnsafeSlow(this.blockSize);
  }

  /**
   * Only for blocks nothing references any more (a part api.video acknowledged): a block of a
   * failed part may still sit in a dying socket's write queue, so those are left to the GC.
   */
  give(block: Buffer): void {
    if (block.length !== this.blockSize) return;
    if (this.free.length < this.maxFree) this.free.push(block);
    else this.allocatedBlocks -= 1;
  }

  /** Forgets a block that will not come back (its part failed). */
  drop(): void {
    this.allocatedBlocks -= 1;
  }
}
