/** The emulator's upload rules, one row each, strict rejections included. */
import { createHash } from 'node:crypto';
import { EmulatorProblem } from '../../src/emulator/problems';
import { SourceAssembly, parseContentRange } from '../../src/emulator/source-assembly';
import { MiB } from '../helpers/data';

const bytes = (n: number, fill = 1) => Buffer.alloc(n, fill);
const sha = (...b: Buffer[]) => createHash('sha256').update(Buffer.concat(b)).digest('hex');

type Step = [range: string | undefined, data: Buffer];

/** Applies the steps; returns the problem type of the first rejected step, or the summary. */
function run(steps: Step[]) {
  const assembly = new SourceAssembly();
  for (const [i, [range, data]] of steps.entries()) {
    try {
      assembly.add(parseContentRange(range), data);
    } catch (err) {
      if (!(err instanceof EmulatorProblem)) throw err;
      return {
        rejectedStep: i,
        status: err.status,
        type: err.typeName,
        summary: assembly.summary(),
      };
    }
  }
  return { rejectedStep: -1, summary: assembly.summary() };
}

const a = bytes(5 * MiB, 1);
const b = bytes(5 * MiB, 2);
const c = bytes(100, 3);

describe.each([
  [
    'sequential parts complete on N/N',
    [
      ['part 1/*', a],
      ['part 2/*', b],
      ['part 3/3', c],
    ],
    sha(a, b, c),
  ],
  [
    'out-of-order parts are kept and assembled in order',
    [
      ['part 2/*', b],
      ['part 3/3', c],
      ['part 1/*', a],
    ],
    sha(a, b, c),
  ],
  [
    'a known total (part N/M) completes on the last',
    [
      ['part 1/3', a],
      ['part 3/3', c],
      ['part 2/3', b],
    ],
    sha(a, b, c),
  ],
  [
    'a re-sent part (same bytes) is accepted',
    [
      ['part 1/*', a],
      ['part 1/*', a],
      ['part 2/2', c],
    ],
    sha(a, c),
  ],
  [
    'a re-sent part ahead of a gap replaces the earlier bytes',
    [
      ['part 2/*', a],
      ['part 2/*', b],
      ['part 3/3', c],
      ['part 1/*', a],
    ],
    sha(a, b, c),
  ],
  ['a single part labelled 1/1 may be 1 byte', [['part 1/1', bytes(1)]], sha(bytes(1))],
  ['no Content-Range: the whole file at once', [[undefined, c]], sha(c)],
  [
    'byte ranges, in order',
    [
      ['bytes 0-5242879/5242980', a],
      ['bytes 5242880-5242979/5242980', c],
    ],
    sha(a, c),
  ],
  [
    'byte ranges, out of order',
    [
      ['bytes 5242880-5242979/5242980', c],
      ['bytes 0-5242879/5242980', a],
    ],
    sha(a, c),
  ],
] as Array<[string, Step[], string]>)('accepted: %s', (_name, steps, digest) => {
  test('completes with the SHA-256 of the parts in order', () => {
    const { rejectedStep, summary } = run(steps);
    expect(rejectedStep).toBe(-1);
    expect(summary).toMatchObject({ completed: true, sha256: digest });
  });
});

describe.each([
  ['a non-final part under 5 MiB', [['part 1/*', bytes(5 * MiB - 1)]], 'uploaded-part-too-small'],
  ['a part over 128 MiB', [['part 1/1', bytes(128 * MiB + 1)]], 'uploaded-part-too-large'],
  ['an empty part', [['part 1/1', bytes(0)]], 'uploaded-file-empty'],
  [
    'any part after completion',
    [
      ['part 1/1', c],
      ['part 2/2', c],
    ],
    'video-source-already-uploaded',
  ],
  [
    'a whole file after completion',
    [
      [undefined, c],
      [undefined, c],
    ],
    'video-source-already-uploaded',
  ],
  [
    'a part number above the declared total',
    [
      ['part 1/2', a],
      ['part 3/*', a],
    ],
    'invalid-content-range',
  ],
  [
    'a different total than declared',
    [
      ['part 1/3', a],
      ['part 2/4', a],
    ],
    'invalid-content-range',
  ],
  [
    'a total below a part already received',
    [
      ['part 3/*', a],
      ['part 2/2', c],
    ],
    'invalid-content-range',
  ],
  ['part 0', [['part 0/*', a]], 'invalid-content-range'],
  ['N above M in one header', [['part 3/2', a]], 'invalid-content-range'],
  ['a garbled header', [['parts 1 of 2', a]], 'invalid-content-range'],
  [
    'mixing parts and byte ranges',
    [
      ['part 1/*', a],
      ['bytes 5242880-5242979/5242980', c],
    ],
    'invalid-content-range',
  ],
  ['a byte range that does not match its data', [['bytes 0-9/100', c]], 'invalid-content-range'],
  ['a non-final byte range under 5 MiB', [['bytes 0-99/200', c]], 'uploaded-part-too-small'],
  ['a whole file over 200 MiB', [[undefined, bytes(200 * MiB + 1)]], 'uploaded-file-too-large'],
] as Array<[string, Step[], string]>)('rejected: %s', (_name, steps, type) => {
  test(`400 ${type}, and nothing completes`, () => {
    const result = run(steps);
    expect(result).toMatchObject({ rejectedStep: steps.length - 1, status: 400, type });
  });
});

test('completion needs every part 1..N: the last label alone is not enough', () => {
  const { summary } = run([
    ['part 1/*', a],
    ['part 3/3', c],
  ]);
  expect(summary).toMatchObject({ completed: false, declaredTotal: 3, sha256: null });
});

test('only pieces ahead of a gap are held; the contiguous prefix is hashed and dropped', () => {
  const assembly = new SourceAssembly();
  assembly.add(parseContentRange('part 1/*'), a);
  assembly.add(parseContentRange('part 3/*'), b);
  // part 1 folded into the hash; part 3 waits for 2.
  expect((assembly as unknown as { ahead: Map<number, Buffer> }).ahead.size).toBe(1);
});
