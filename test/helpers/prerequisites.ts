import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Everything the full suite needs beyond Node and Redis, as README "Tests" lists it. */
export const INSTALL_ALL =
  'sudo apt-get install -y redis-server curl openssl nginx-light chromium python3-requests';

/** Debian's Chromium, which playwright-core drives (no browser download). */
export const CHROMIUM = '/usr/bin/chromium';

const PROGRAMS = {
  curl: { package: 'curl', present: () => runs('curl', ['--version']) },
  openssl: { package: 'openssl', present: () => runs('openssl', ['version']) },
  nginx: { package: 'nginx-light', present: () => runs('nginx', ['-v']) },
  chromium: { package: 'chromium', present: () => existsSync(CHROMIUM) },
  'python3-requests': {
    package: 'python3-requests',
    present: () => runs('/usr/bin/python3', ['-c', 'import requests']),
  },
} as const;

function runs(command: string, args: string[]): boolean {
  return spawnSync(command, args, { stdio: 'ignore' }).status === 0;
}

/**
 * Fails (never skips) when a program a test runs is missing, saying what to install: a suite that
 * skips what it cannot run reports green for what it never tested.
 */
export function requirePrograms(...names: Array<keyof typeof PROGRAMS>): void {
  const missing = names.filter((name) => !PROGRAMS[name].present());
  if (missing.length === 0) return;
  const packages = missing.map((name) => PROGRAMS[name].package).join(' ');
  throw new Error(
    `missing for this test: ${missing.join(', ')}. Install with: sudo apt-get install -y ${packages}\n` +
      `(everything the full suite needs: ${INSTALL_ALL})`,
  );
}
