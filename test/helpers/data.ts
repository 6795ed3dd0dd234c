import { createHash, randomFillSync } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export const MiB = 1024 * 1024;

export function sha256(data: Buffer | Buffer[]): string {
  const hash = createHash('sha256');
  for (const b of Array.isArray(data) ? data : [data]) hash.update(b);
  return hash.digest('hex');
}

export function randomBytesOf(size: number): Buffer {
  return randomFillSync(Buffer.allocUnsafe(size));
}

/** A stream of `size` random bytes, generated as it is read; `sha256()` is known at its end. */
export function randomStream(
  size: number,
  chunkSize = 256 * 1024,
): Readable & { sha256(): string } {
  const hash = createHash('sha256');
  let left = size;
  let digest: string | undefined;
  const stream = new Readable({
    read() {
      if (left === 0) {
        digest = hash.digest('hex');
        return void this.push(null);
      }
      const chunk = randomFillSync(Buffer.allocUnsafe(Math.min(chunkSize, left)));
      left -= chunk.length;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  return Object.assign(stream, {
    sha256() {
      if (!digest) throw new Error('the stream has not ended');
      return digest;
    },
  });
}

export interface TempFile {
  path: string;
  size: number;
  sha256: string;
  remove(): Promise<void>;
}

export async function tempFile(size: number, name = 'clip.mp4'): Promise<TempFile> {
  const dir = await mkdtemp(join(tmpdir(), 'relay-test-'));
  const path = join(dir, name);
  const source = randomStream(size);
  await pipeline(source, createWriteStream(path));
  return {
    path,
    size,
    sha256: source.sha256(),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
