import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';

/** Everything the full suite needs beyond Node, as CONTRIBUTING.md, "Prerequisites", lists it (Debian's packages). */
export const INSTALL_ALL =
  'sudo apt-get install -y redis-server curl openssl nginx-light chromium python3-requests prometheus';

/** Debian's Chromium, which playwright-core drives (no browser download). */
export const CHROMIUM = '/usr/bin/chromium';

type Env = NodeJS.ProcessEnv;

const PROGRAMS = {
  curl: { package: 'curl', present: (env?: Env) => runs('curl', ['--version'], env) },
  openssl: { package: 'openssl', present: (env?: Env) => runs('openssl', ['version'], env) },
  nginx: { package: 'nginx-light', present: (env?: Env) => runs('nginx', ['-v'], env) },
  chromium: { package: 'chromium', present: () => existsSync(CHROMIUM) },
  'python3-requests': {
    package: 'python3-requests',
    present: (env?: Env) => runs('/usr/bin/python3', ['-c', 'import requests'], env),
  },
  // Tests start redis-servers of their own (TLS, Sentinel, one to kill or pause).
  'redis-server': {
    package: 'redis-server',
    present: (env?: Env) => runs('redis-server', ['--version'], env),
  },
  // The alert rules are checked and unit-tested with Prometheus's own tool.
  promtool: { package: 'prometheus', present: (env?: Env) => runs('promtool', ['--version'], env) },
} as const;

function runs(command: string, args: string[], env: Env = process.env): boolean {
  return spawnSync(command, args, { stdio: 'ignore', env }).status === 0;
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

/**
 * Everything the suite needs, checked before any test runs: the programs above, kubectl (it
 * renders deploy/kubernetes) and Redis at 127.0.0.1:6379. Returns one message naming every missing
 * piece and how to get it, or undefined when nothing is missing.
 */
export async function missingPrerequisites(env: Env = process.env): Promise<string | undefined> {
  const missing: string[] = [];
  const packages: string[] = [];
  for (const [name, program] of Object.entries(PROGRAMS)) {
    if (program.present(env)) continue;
    missing.push(name);
    packages.push(program.package);
  }
  const notes: string[] = [];
  if (!runs('kubectl', ['version', '--client'], env)) {
    missing.push('kubectl');
    notes.push('kubectl: https://kubernetes.io/docs/tasks/tools/ (Debian 12 has no package)');
  }
  if (!(await redisAnswers(6379))) {
    missing.push('Redis at 127.0.0.1:6379');
    notes.push(
      "Redis: start one with `redis-server --daemonize yes --save '' --appendonly no` (package redis-server)",
    );
  }
  if (missing.length === 0) return undefined;
  return [
    `npm test needs what is missing here: ${missing.join(', ')}.`,
    ...(packages.length > 0 ? [`Install with: sudo apt-get install -y ${packages.join(' ')}`] : []),
    ...notes,
    `(everything the suite needs: ${INSTALL_ALL}, kubectl, and Redis running on 127.0.0.1:6379)`,
  ].join('\n');
}

function redisAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 2000);
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d: Buffer) => done(d.toString().startsWith('+PONG')));
  });
}
