import { PartCutter, type Part } from '../../src/upload/part-cutter';

const P = 10; // a small part size keeps the table readable; the rules do not depend on it

/** Feeds `total` bytes in chunks of `chunk`; returns every part and the bytes they carry. */
function cut(total: number, chunk: number) {
  const cutter = new PartCutter(P);
  const source = Buffer.from(Array.from({ length: total }, (_, i) => i % 251));
  const parts: Part[] = [];
  const releasedAfter: number[] = [];
  for (let offset = 0; offset < total; offset += chunk) {
    const released = cutter.push(source.subarray(offset, offset + chunk));
    parts.push(...released);
    if (released.length > 0) releasedAfter.push(Math.min(offset + chunk, total));
  }
  const last = cutter.finish();
  if (last) parts.push(last);
  return { source, parts, releasedAfter };
}

test.each([
  // total, chunk, expected part sizes
  [1, 1, [1]],
  [9, 4, [9]],
  [10, 3, [10]],
  [10, 10, [10]],
  [11, 3, [10, 1]],
  [20, 7, [10, 10]],
  [20, 20, [10, 10]],
  [21, 5, [10, 10, 1]],
  [29, 64, [10, 10, 9]],
  [30, 1, [10, 10, 10]],
])('%i bytes in chunks of %i → parts %j', (total, chunk, sizes) => {
  const { source, parts } = cut(total, chunk);
  expect(parts.map((p) => p.size)).toEqual(sizes);
  expect(parts.map((p) => p.number)).toEqual(sizes.map((_, i) => i + 1));
  for (const part of parts) expect(part.chunks.reduce((n, c) => n + c.length, 0)).toBe(part.size);
  expect(Buffer.concat(parts.flatMap((p) => p.chunks)).equals(source)).toBe(true);
});

test('a full part is released only once a further byte has arrived', () => {
  const cutter = new PartCutter(P);
  expect(cutter.push(Buffer.alloc(10))).toEqual([]);
  expect(cutter.pendingBytes).toBe(10);
  const released = cutter.push(Buffer.alloc(1));
  expect(released.map((p) => p.size)).toEqual([10]);
  expect(cutter.pendingBytes).toBe(1);
});

test('no bytes at all: no part, not even an empty one', () => {
  const cutter = new PartCutter(P);
  cutter.push(Buffer.alloc(0));
  expect(cutter.finish()).toBeUndefined();
});

test('cuts share memory with the chunks they came from (no copy)', () => {
  const cutter = new PartCutter(P);
  const chunk = Buffer.alloc(15, 7);
  const [first] = cutter.push(chunk);
  expect(first!.chunks[0]!.buffer).toBe(chunk.buffer);
  expect(cutter.finish()!.chunks[0]!.buffer).toBe(chunk.buffer);
});
