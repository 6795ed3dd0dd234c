import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/** Tests that start the relay as its own process run dist/: build it once per run. */
export default function globalSetup(): void {
  const root = join(__dirname, '..');
  execFileSync(
    process.execPath,
    [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: root,
      stdio: 'inherit',
    },
  );
  execFileSync(process.execPath, [join(root, 'scripts/build-assets.mjs')], { stdio: 'inherit' });
}
