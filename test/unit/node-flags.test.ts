import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NODE_FLAGS } from '../helpers/process';

const ROOT = join(__dirname, '../..');
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');

/** node's flags in the image's CMD (exec form, final stage): what the bench and `npm start` copy. */
function imageFlags(): string[] {
  const cmd = read('Dockerfile')
    .split('\n')
    .filter((line) => /^CMD\s/.test(line))
    .at(-1);
  const argv = JSON.parse(cmd!.replace(/^CMD\s+/, '')) as string[];
  expect(argv[0]).toBe('node');
  expect(argv.at(-1)).toBe('dist/main.js');
  return argv.slice(1, -1);
}

test('`npm start` gives node the same flags as the image (V8 flags NODE_OPTIONS refuses)', () => {
  const pkg = JSON.parse(read('package.json')) as { scripts: { start: string } };
  const start = pkg.scripts.start.split(/\s+/);
  expect(start[0]).toBe('node');
  expect(start.at(-1)).toBe('dist/main.js');
  // The flags the tests start the relay with (test/helpers/process.ts) are npm start's.
  expect(NODE_FLAGS).toEqual(start.slice(1, -1));
  expect(NODE_FLAGS).toEqual(imageFlags());
});

test('the image starts node with the old-generation floor, and node accepts every flag', () => {
  const flags = imageFlags();
  // Without it, eight fast uploads run a full GC every ~150 ms (docs/performance-notes.md).
  expect(flags).toContain('--initial-old-space-size=64');
  // A flag node does not know stops it before the relay starts ("bad option"): check here.
  expect(() =>
    execFileSync(process.execPath, [...flags, '-e', '0'], { stdio: 'pipe' }),
  ).not.toThrow();
});
