import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SECRET_SETTINGS } from '../../src/kernel/config';

const root = join(__dirname, '../..');
const read = (file: string) => readFileSync(join(root, file), 'utf8');
// Every name loadConfig reads: r.int('NAME'…), r.raw('NAME'), r.either('NAME')…
const settings = [
  ...new Set(
    [...read('src/kernel/config.ts').matchAll(/r\.\w+(?:<[^>]+>)?\('([A-Z][A-Z0-9_]+)'/g)].map(
      (m) => m[1]!,
    ),
  ),
];

test('loadConfig reads the settings the issues name', () => {
  expect(settings).toEqual(
    expect.arrayContaining([
      'PORT',
      'APIVIDEO_API_KEY',
      'UPLOAD_PART_SIZE',
      'SHUTDOWN_GRACE_MS',
      'HTTPS_PROXY',
    ]),
  );
});

// The operator's reference: the first column of the tables under docs/operations.md's "## Settings".
const OPERATIONS = 'docs/operations.md';
const documented = (() => {
  const doc = read(OPERATIONS);
  const section = doc.slice(doc.indexOf('\n## Settings\n')).split(/\n## /)[1]!;
  const firstCells = [...section.matchAll(/^\| ([^|]+) \|/gm)].map((m) => m[1]!);
  return new Set(
    firstCells.flatMap((cell) => [...cell.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]!)),
  );
})();

test('the settings tables are where the test reads them', () => {
  expect(documented.size).toBeGreaterThan(40);
});

test.each(settings)('%s is in .env.example and in the settings of docs/operations.md', (name) => {
  expect(read('.env.example')).toMatch(new RegExp(`^#? ?${name}=`, 'm'));
  expect(documented).toContain(name);
});

test.each(SECRET_SETTINGS.map((name) => `${name}_FILE`))(
  '%s (a secret from a file) is in .env.example and in the settings of docs/operations.md',
  (name) => {
    expect(read('.env.example')).toMatch(new RegExp(`^#? ?${name}=`, 'm'));
    expect(documented).toContain(name);
  },
);
