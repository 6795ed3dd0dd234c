// Preloaded into a relay process (NODE_OPTIONS=--import …): when it exits, writes to
// LOADED_PACKAGES_FILE the packages it required and, for each, who required it (a package, or
// `relay` for the relay's own files), so a test sees what a setting made it load and why.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

// The relay is CommonJS: every module it required is in this cache, with what it required.
const { cache } = createRequire(import.meta.url);

const packageOf = (file) => {
  const match = /.*node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)/.exec(file);
  return match ? match[1].replace(/\\/g, '/') : 'relay';
};

process.on('exit', () => {
  const requiredBy = {};
  for (const parent of Object.values(cache)) {
    for (const child of parent.children ?? []) {
      const name = packageOf(child.filename);
      const by = packageOf(parent.filename);
      if (name === 'relay' || name === by) continue;
      (requiredBy[name] ??= new Set()).add(by);
    }
  }
  const out = Object.fromEntries(
    Object.entries(requiredBy)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, by]) => [name, [...by].sort()]),
  );
  writeFileSync(process.env.LOADED_PACKAGES_FILE, JSON.stringify(out));
});
