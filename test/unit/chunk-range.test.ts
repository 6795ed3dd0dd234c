import {
  parseChunkRange,
  planPart,
  RangeProblem,
} from '../../src/routes/apivideo-upload/chunk-range';

const MiB = 1024 * 1024;

test('the forms api.video’s clients send', () => {
  expect(parseChunkRange(undefined)).toEqual({ kind: 'whole' });
  expect(parseChunkRange('part 2/3')).toEqual({ kind: 'part', part: 2, total: 3 });
  expect(parseChunkRange('part 4/*')).toEqual({ kind: 'part', part: 4, total: undefined });
  expect(parseChunkRange('bytes 0-99/250')).toEqual({ kind: 'bytes', from: 0, to: 99, size: 250 });
});

test('anything else is refused, not guessed', () => {
  for (const bad of [
    'part 0/3',
    'part 4/3',
    'part 1/0',
    'part 99999/*',
    'bytes 10-5/20',
    'bytes 0-20/20',
    'bytes 0-1/99999999999999999',
    'bytes */20',
    'parts 1/2',
    'x'.repeat(200),
  ])
    expect(() => parseChunkRange(bad)).toThrow(RangeProblem);
});

test('part n/m: n is the part, m/m the last; the total may not change', () => {
  const first = planPart({ kind: 'part', part: 1, total: 3 }, {});
  expect(first).toMatchObject({ part: 1, last: false, progress: { totalParts: 3 } });
  expect(planPart({ kind: 'part', part: 3, total: 3 }, first.progress)).toMatchObject({
    part: 3,
    last: true,
  });
  expect(() => planPart({ kind: 'part', part: 2, total: 4 }, first.progress)).toThrow(RangeProblem);
  expect(planPart({ kind: 'part', part: 5, total: undefined }, {})).toMatchObject({
    part: 5,
    last: false,
  });
  expect(planPart({ kind: 'whole' }, {})).toMatchObject({ part: 1, last: true });
});

test('bytes a-b/size: parts on the grid of the first chunk, the one ending the file last', () => {
  const size = 12 * MiB + 5;
  const first = planPart(parseChunkRange(`bytes 0-${5 * MiB - 1}/${size}`), {});
  expect(first).toEqual({
    part: 1,
    last: false,
    length: 5 * MiB,
    progress: { chunkSize: 5 * MiB, totalParts: 3, size },
  });
  const second = planPart(
    parseChunkRange(`bytes ${5 * MiB}-${10 * MiB - 1}/${size}`),
    first.progress,
  );
  expect(second).toMatchObject({ part: 2, last: false });
  const last = planPart(parseChunkRange(`bytes ${10 * MiB}-${size - 1}/${size}`), first.progress);
  expect(last).toMatchObject({ part: 3, last: true, length: 2 * MiB + 5 });
  // Off the grid, a short chunk that is not the last, a later chunk first, another file size.
  expect(() => planPart(parseChunkRange(`bytes 7-${5 * MiB + 6}/${size}`), first.progress)).toThrow(
    RangeProblem,
  );
  expect(() =>
    planPart(parseChunkRange(`bytes ${5 * MiB}-${6 * MiB}/${size}`), first.progress),
  ).toThrow(RangeProblem);
  expect(() => planPart(parseChunkRange(`bytes ${5 * MiB}-${10 * MiB - 1}/${size}`), {})).toThrow(
    RangeProblem,
  );
  expect(() =>
    planPart(parseChunkRange(`bytes ${5 * MiB}-${10 * MiB - 1}/${size + 1}`), first.progress),
  ).toThrow(RangeProblem);
  // A file in one byte range is one part, the last.
  expect(planPart(parseChunkRange('bytes 0-9/10'), {})).toMatchObject({ part: 1, last: true });
});
