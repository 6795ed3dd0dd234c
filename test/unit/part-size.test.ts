/** The adaptive part size: starts at api.video's minimum, grows with a fast client, within the rules. */
import { PartSizer, clampSize, partRuleBroken } from '../../src/engine/part-size';
import { MIN_PART_SIZE } from '../../src/kernel/sizes';

const MiB = 1024 * 1024;

/** The sizes a sizer gives when each part takes the client `msPerMiB` per MiB to fill. */
function sizesFor(max: number, msPerMiB: number[], parts: number): number[] {
  const sizer = new PartSizer({ max });
  const sizes: number[] = [];
  for (let i = 0; i < parts; i++) {
    const size = sizer.next;
    sizes.push(size);
    sizer.filled(size, (size / MiB) * msPerMiB[Math.min(i, msPerMiB.length - 1)]!);
  }
  return sizes;
}

test('every upload starts at 5 MiB', () => {
  expect(new PartSizer({ max: 16 * MiB }).next).toBe(MIN_PART_SIZE);
  expect(MIN_PART_SIZE).toBe(5 * 1024 * 1024);
});

test.each([
  // client speed, UPLOAD_PART_SIZE, the part sizes in MiB
  ['a phone at 512 KiB/s stays at 5 MiB', 2000, 16, [5, 5, 5, 5, 5]],
  ['a client at 8 MiB/s settles at 8 MiB', 125, 16, [5, 8, 8, 8, 8]],
  ['a fast client doubles up to UPLOAD_PART_SIZE', 1, 16, [5, 10, 16, 16, 16]],
  ['a fast client and 64 MiB parts', 1, 64, [5, 10, 20, 40, 64, 64]],
  ['UPLOAD_PART_SIZE at the minimum pins every part there', 1, 5, [5, 5, 5]],
])('%s', (_name, msPerMiB, maxMiB, expected) => {
  expect(sizesFor(maxMiB * MiB, [msPerMiB], expected.length)).toEqual(expected.map((s) => s * MiB));
});

test('a client that slows down gets smaller parts again, never below 5 MiB', () => {
  expect(sizesFor(16 * MiB, [1, 1, 1, 250, 5000], 6).map((s) => s / MiB)).toEqual([
    5, 10, 16, 16, 5, 5,
  ]);
});

test('the same fill times always give the same sizes (deterministic)', () => {
  const times = [3, 40, 1, 700, 90, 2];
  expect(sizesFor(32 * MiB, times, 12)).toEqual(sizesFor(32 * MiB, times, 12));
});

test('whatever the fill times, every size is within [5 MiB, UPLOAD_PART_SIZE]', () => {
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 1000;
  for (const max of [5 * MiB, 16 * MiB, 20_000_000, 128 * MiB]) {
    const sizer = new PartSizer({ max });
    for (let i = 0; i < 500; i++) {
      const size = sizer.next;
      expect(size).toBeGreaterThanOrEqual(MIN_PART_SIZE);
      expect(size).toBeLessThanOrEqual(max);
      sizer.filled(size, random() < 10 ? 0 : random() * 20);
    }
  }
});

test('clampSize rounds down to whole MiB inside the bounds', () => {
  expect(clampSize(7.7 * MiB, 5 * MiB, 16 * MiB)).toBe(7 * MiB);
  expect(clampSize(1, 5 * MiB, 16 * MiB)).toBe(5 * MiB);
  expect(clampSize(Number.NaN, 5 * MiB, 16 * MiB)).toBe(5 * MiB);
  expect(clampSize(99 * MiB, 5 * MiB, 20_000_000)).toBe(20_000_000);
});

test.each([
  [[5 * MiB, 10 * MiB, 1], undefined],
  [[5 * MiB, 5 * MiB - 1, 100], 'part 2 is 5242879 bytes, below 5242880 and not the last'],
  [[17 * MiB], `part 1 is ${17 * MiB} bytes, above ${16 * MiB}`],
  [[5 * MiB, 0], 'part 2 is empty'],
  [[1], undefined],
])('partRuleBroken(%j)', (sizes, broken) => {
  expect(partRuleBroken(sizes, 16 * MiB)).toBe(broken);
});
