/** The emulator is the oracle: it must not share code with the relay, and only start-up may start it. */
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';

const SRC = join(__dirname, '../../src');
function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}
const imports = (file: string) =>
  [...readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)].map((m) => m[1]!);

test('src/emulator imports nothing from the relay', () => {
  for (const file of files(join(SRC, 'emulator'))) {
    for (const spec of imports(file))
      expect(`${relative(SRC, file)} → ${spec}`).not.toMatch(/→ \.\.\//);
  }
});

test('the relay imports the emulator only from src/main.ts', () => {
  const importers = files(SRC)
    .filter((f) => !f.startsWith(join(SRC, 'emulator')))
    .filter((f) => imports(f).some((spec) => /(^|\/)emulator\//.test(spec)))
    .map((f) => relative(SRC, f));
  expect(importers).toEqual(['main.ts']);
});
