/**
 * The emulator takes parts of differing sizes as api.video does (PROTOCOL.md: every part but the
 * last >= 5 MiB, none above 128 MiB, nothing says parts must be equal), so adaptive part sizes
 * are checked against the same rules the real service applies.
 */
import { createHash } from 'node:crypto';
import { EmulatorProblem } from '../../src/emulator/problems';
import { SourceAssembly, parseContentRange } from '../../src/emulator/source-assembly';

const MiB = 1024 * 1024;
const sha = (...b: Buffer[]) => createHash('sha256').update(Buffer.concat(b)).digest('hex');
const bytes = (n: number, fill: number) => Buffer.alloc(n, fill);

function send(sizes: number[], order = sizes.map((_, i) => i)) {
  const data = sizes.map((n, i) => bytes(n, i + 1));
  const assembly = new SourceAssembly();
  for (const i of order) {
    const label = i === sizes.length - 1 ? `part ${i + 1}/${sizes.length}` : `part ${i + 1}/*`;
    assembly.add(parseContentRange(label), data[i]!);
  }
  return { summary: assembly.summary(), digest: sha(...data) };
}

test.each([
  ['growing sizes, as a fast client gets', [5 * MiB, 10 * MiB, 16 * MiB, 16 * MiB, 3]],
  ['sizes that grow and shrink back', [5 * MiB, 10 * MiB, 5 * MiB, 7 * MiB, 5 * MiB]],
  ['sizes not a whole MiB (shrunk under memory pressure)', [5 * MiB + 1, 6 * MiB - 7, 1]],
  ['a last part bigger than the others', [5 * MiB, 9 * MiB]],
  ['the largest part api.video takes, between small ones', [5 * MiB, 128 * MiB, 5 * MiB, 1]],
])('accepted: %s', (_name, sizes) => {
  const { summary, digest } = send(sizes);
  expect(summary).toMatchObject({ completed: true, sha256: digest, size: sum(sizes) });
  expect(summary.parts.map((p) => p.size)).toEqual(sizes);
});

test('differing sizes out of order are assembled in part order', () => {
  const sizes = [5 * MiB, 10 * MiB, 6 * MiB, 2];
  const { summary, digest } = send(sizes, [2, 0, 3, 1]);
  expect(summary).toMatchObject({ completed: true, sha256: digest });
});

test('a part under 5 MiB between bigger ones is refused, as api.video does', () => {
  let caught: unknown;
  try {
    send([10 * MiB, 5 * MiB - 1, 10 * MiB, 1]);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(EmulatorProblem);
  expect(caught).toMatchObject({ status: 400, typeName: 'uploaded-part-too-small' });
});

function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}
