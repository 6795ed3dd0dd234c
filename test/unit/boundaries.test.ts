/**
 * The tree shows the architecture: folders by role, each importing only the layers below it, so
 * no two folders depend on each other (docs/architecture.md, "Where things live"). The emulator is
 * the oracle: it shares no code with the relay, and only start-up may start it.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';

const SRC = join(__dirname, '../../src');
function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}
const imports = (file: string) =>
  [...readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)].map((m) => m[1]!);

/** A file's folder under src/, or `(root)` for the start-up and composition files beside them. */
const layerOf = (file: string) => {
  const parts = relative(SRC, file).split(sep);
  return parts.length === 1 ? '(root)' : parts[0]!;
};

/** What each folder may import besides itself: the layers below it, never one above. */
const ALLOWED: Record<string, string[]> = {
  kernel: [],
  apivideo: ['kernel'],
  engine: ['kernel', 'apivideo'],
  stores: ['kernel'],
  http: ['kernel'],
  sessions: ['kernel', 'apivideo', 'engine', 'stores'],
  'upload-tokens': ['kernel', 'engine', 'http', 'stores'],
  webhooks: ['kernel', 'apivideo', 'engine'],
  routes: [
    'kernel',
    'apivideo',
    'engine',
    'http',
    'stores',
    'sessions',
    'upload-tokens',
    'webhooks',
  ],
  tracing: ['kernel', 'engine'],
  emulator: [],
};

/** Every import that crosses folders, as `from → to` pairs of layers with an example. */
function crossings(): Array<{ from: string; to: string; file: string; spec: string }> {
  return files(SRC).flatMap((file) =>
    imports(file)
      .map((spec) => ({ from: layerOf(file), to: layerOf(join(dirname(file), spec)), file, spec }))
      .filter((c) => c.from !== c.to),
  );
}

test('every folder of src/ has a place in the layers', () => {
  const folders = new Set(files(SRC).map(layerOf));
  folders.delete('(root)');
  expect([...folders].sort()).toEqual(Object.keys(ALLOWED).sort());
});

test('each folder imports only the layers below it', () => {
  const wrong = crossings()
    .filter((c) => c.from !== '(root)' && !ALLOWED[c.from]!.includes(c.to))
    .map((c) => `${relative(SRC, c.file)} → ${c.spec} (${c.from} → ${c.to})`);
  expect(wrong).toEqual([]);
});

test('no cycle between folders', () => {
  const edges = new Map<string, Set<string>>();
  for (const c of crossings()) edges.set(c.from, (edges.get(c.from) ?? new Set()).add(c.to));
  const cycle = (start: string, at: string, seen: string[]): string[] | undefined => {
    for (const next of edges.get(at) ?? []) {
      if (next === start) return [...seen, next];
      if (!seen.includes(next)) {
        const found = cycle(start, next, [...seen, next]);
        if (found) return found;
      }
    }
    return undefined;
  };
  const cycles = [...edges.keys()].map((f) => cycle(f, f, [f])).filter(Boolean);
  expect(cycles).toEqual([]);
});

test('nothing imports a route but the app that mounts them', () => {
  const importers = crossings()
    .filter((c) => c.to === 'routes')
    .map((c) => relative(SRC, c.file));
  expect([...new Set(importers)]).toEqual(['app.ts']);
});

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
