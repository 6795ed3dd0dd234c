import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { missingPrerequisites } from './helpers/prerequisites';

/**
 * Before any test: everything the suite needs is here (else one message naming all of it, and no
 * test runs), and dist/ is built for the tests that start the relay as its own process.
 */
export default async function globalSetup(): Promise<void> {
  const missing = await missingPrerequisites();
  if (missing) {
    // One message and out: a stack trace after it would only bury what to install.
    process.stderr.write(`\n${missing}\nNothing was tested.\n\n`);
    process.exit(1);
  }
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
