import { PartCutter, type Cutter, type Part } from '../../src/upload/part-cutter';
import { PooledPartCutter } from '../../src/upload/pooled-part-cutter';

const P = 10; // a small part size keeps the table readable; the rules do not depend on it

const cutters: Array<[string, () => Cutter]> = [
  ['chunk lists', () => new PartCutter(P)],
  ['pooled buffers', () => new PooledPartCutter(P, 3)],
];

/**
 * Feeds `total` bytes in chunks of `chunk`, acknowledging each part at once (its bytes are read
 * before its buffer is recycled, as the upstream would have sent them).
 */
function cut(make: () => Cutter, total: number, chunk: number) {
  const cutter = make();
  const source = Buffer.from(Array.from({ length: total }, (_, i) => i % 251));
  const parts: Array<Omit<Part, 'chunks'> & { bytes: Buffer; chunkCount: number }> = [];
  const take = (part: Part) => {
    parts.push({
      number: part.number,
      size: part.size,
      bytes: Buffer.concat(part.chunks),
      chunkCount: part.chunks.length,
    });
    cutter.recycle(part);
  };
  for (let offset = 0; offset < total; offset += chunk)
    cutter.push(source.subarray(offset, offset + chunk)).forEach(take);
  const last = cutter.finish();
  if (last) take(last);
  return { source, parts };
}

describe.each(cutters)('%s', (_name, make) => {
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
    const { source, parts } = cut(make, total, chunk);
    expect(parts.map((p) => p.size)).toEqual(sizes);
    expect(parts.map((p) => p.number)).toEqual(sizes.map((_, i) => i + 1));
    for (const part of parts) expect(part.bytes.length).toBe(part.size);
    expect(Buffer.concat(parts.map((p) => p.bytes)).equals(source)).toBe(true);
  });

  test('a full part is released only once a further byte has arrived', () => {
    const cutter = make();
    expect(cutter.push(Buffer.alloc(10))).toEqual([]);
    const released = cutter.push(Buffer.alloc(1));
    expect(released.map((p) => p.size)).toEqual([10]);
    expect(cutter.finish()!.size).toBe(1);
  });

  test('no bytes at all: no part, not even an empty one', () => {
    const cutter = make();
    cutter.push(Buffer.alloc(0));
    expect(cutter.finish()).toBeUndefined();
  });
});

test('chunk lists: cuts share memory with the chunks they came from (no copy)', () => {
  const cutter = new PartCutter(P);
  const chunk = Buffer.alloc(15, 7);
  const [first] = cutter.push(chunk);
  expect(first!.chunks[0]!.buffer).toBe(chunk.buffer);
  expect(cutter.finish()!.chunks[0]!.buffer).toBe(chunk.buffer);
});

test('pooled: never more buffers than allowed; bytes wait by reference until one is recycled', () => {
  const cutter = new PooledPartCutter(P, 2);
  const source = Buffer.from(Array.from({ length: 45 }, (_, i) => i));
  const out: Part[] = [];
  for (let i = 0; i < 45; i += 5) out.push(...cutter.push(source.subarray(i, i + 5)));
  // Two buffers: parts 1 and 2 released (part 2 only once byte 21 came), nothing recycled yet.
  expect(out.map((p) => p.number)).toEqual([1, 2]);
  const buffers = new Set(out.map((p) => p.buffer));
  const firstBytes = Buffer.from(out[0]!.chunks[0]!);
  cutter.recycle(out[0]!);
  out.push(...cutter.push(Buffer.alloc(0)), ...cutter.push(source.subarray(45, 45)));
  const more = cutter.push(Buffer.from([99]));
  // The recycled buffer is reused for part 3; nothing new is allocated.
  expect(more.map((p) => p.number)).toEqual([3]);
  expect(buffers.has(more[0]!.buffer)).toBe(true);
  expect(firstBytes.equals(source.subarray(0, 10))).toBe(true);
  expect(Buffer.concat(more[0]!.chunks).equals(source.subarray(20, 30))).toBe(true);
});
