/**
 * `node dist/main.js` started from a directory with (or without) a `.env`, and in a terminal: what
 * a new user does first. Each relay runs in its own temporary directory, so no developer's own
 * .env can leak in.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { MiB } from '../helpers/data';
import { MAIN, NODE_FLAGS, cleanEnv } from '../helpers/process';

interface Started {
  output(): string;
  exited: Promise<number | null>;
  stop(): Promise<number | null>;
}

/** Spawns `command` in `cwd` and resolves once `ready` matches its output, or once it exits. */
function start(
  command: string,
  args: string[],
  cwd: string,
  env: Record<string, string>,
  ready: RegExp,
): Promise<Started> {
  const child = spawn(command, args, {
    cwd,
    env: cleanEnv({ PORT: '0', HOST: '127.0.0.1', ...env }),
  });
  let output = '';
  // 'close', not 'exit': every byte of output is read by then.
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => resolve(code)),
  );
  const started: Started = {
    output: () => output,
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    const look = (d: Buffer) => {
      output += d.toString();
      if (ready.test(output)) resolve(started);
    };
    child.stdout.on('data', look);
    child.stderr.on('data', look);
    void exited.then(() => resolve(started));
  });
}

let dir: string;
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'relay-first-run-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const LISTENING = /relay listening on (http:\/\/[\d.:]+)/;

test('.env is read from the working directory, and real environment variables win over it', async () => {
  writeFileSync(
    join(dir, '.env'),
    [
      '# as in .env.example',
      'UPLOAD_PART_SIZE=6MiB',
      'UPLOAD_PART_CONCURRENCY=1',
      'export UPLOAD_MAX_CONCURRENT="3"',
      '',
    ].join('\n'),
  );
  const relay = await start(
    process.execPath,
    [...NODE_FLAGS, MAIN],
    dir,
    { UPLOAD_PART_CONCURRENCY: '4' },
    LISTENING,
  );
  try {
    const line = relay
      .output()
      .split('\n')
      .find((l) => LISTENING.test(l))!;
    expect(JSON.parse(line)).toMatchObject({
      partSize: 6 * MiB, // from .env
      partConcurrency: 4, // the environment's, not .env's 1
      maxConcurrentUploads: 3,
    });
    const url = LISTENING.exec(line)![1]!;
    expect((await request(url + '/healthz')).statusCode).toBe(200);
  } finally {
    expect(await relay.stop()).toBe(0);
  }
});

test('a variable read before Node starts (MALLOC_…, NODE_OPTIONS) in .env: a warning naming it, never its value', async () => {
  writeFileSync(
    join(dir, '.env'),
    [
      'MALLOC_TRIM_THRESHOLD_=33554432',
      'NODE_OPTIONS=--secret-looking-value',
      'UPLOAD_PART_SIZE=6MiB',
      '',
    ].join('\n'),
  );
  const relay = await start(process.execPath, [...NODE_FLAGS, MAIN], dir, {}, LISTENING);
  try {
    const warning = relay
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { event?: string; names?: string[]; msg: string })
      .find((l) => l.event === 'dotenv_too_late');
    expect(warning?.names).toEqual(['MALLOC_TRIM_THRESHOLD_', 'NODE_OPTIONS']);
    expect(warning?.msg).toContain('read before Node starts');
    expect(relay.output()).not.toContain('--secret-looking-value');
  } finally {
    expect(await relay.stop()).toBe(0);
  }
});

test('no .env: starts as before', async () => {
  const relay = await start(process.execPath, [...NODE_FLAGS, MAIN], dir, {}, LISTENING);
  try {
    expect(relay.output()).toContain('relay listening');
  } finally {
    expect(await relay.stop()).toBe(0);
  }
});

test('a malformed .env stops start-up with the bad lines named, never their content', async () => {
  writeFileSync(
    join(dir, '.env'),
    ['PORT=0', 'APIVIDEO_API_KEY secret-value-in-a-bad-line', 'TITLE="never closed', ''].join('\n'),
  );
  const relay = await start(process.execPath, [...NODE_FLAGS, MAIN], dir, {}, /$^/);
  expect(await relay.exited).toBe(1);
  const output = relay.output();
  expect(output).toBe(
    `Invalid ${join(dir, '.env')}:\n` +
      '  - line 2: expected NAME=value\n' +
      '  - line 3: the quoted value is never closed\n' +
      'Fix or remove the file; real environment variables need no .env.\n',
  );
  expect(output).not.toContain('secret-value');
});

test('in a terminal the lines are readable; through a pipe they are JSON', async () => {
  // script(1) gives the relay a pseudo-terminal as stdout, as an interactive `npm start` has.
  const relay = await start(
    'script',
    ['-qfec', `${process.execPath} ${MAIN}`, '/dev/null'],
    dir,
    { TERM: 'dumb' },
    /relay listening on http:\/\/[\d.:]+/,
  );
  try {
    const line = relay
      .output()
      .split(/\r?\n/)
      .find((l) => l.includes('relay listening'))!;
    expect(line).toMatch(/^\S*\[\d\d:\d\d:\d\d\.\d{3}\] \S*INFO\S*: \S*relay listening on/);
    expect(() => JSON.parse(line) as unknown).toThrow();
  } finally {
    await relay.stop();
  }
  const piped = await start(process.execPath, [...NODE_FLAGS, MAIN], dir, {}, LISTENING);
  try {
    const line = piped
      .output()
      .split('\n')
      .find((l) => l.includes('relay listening'))!;
    expect(JSON.parse(line)).toMatchObject({ level: 30 });
  } finally {
    await piped.stop();
  }
});

test('NODE_ENV=production in a terminal: still JSON', async () => {
  const relay = await start(
    'script',
    ['-qfec', `${process.execPath} ${MAIN}`, '/dev/null'],
    dir,
    {
      NODE_ENV: 'production',
      APIVIDEO_API_KEY: 'a-key-for-this-test',
      APIVIDEO_BASE_URL: 'http://127.0.0.1:9',
      RELAY_ALLOW_ANONYMOUS: 'true',
    },
    /relay listening on http:\/\/[\d.:]+/,
  );
  try {
    const line = relay
      .output()
      .split(/\r?\n/)
      .find((l) => l.includes('relay listening'))!;
    expect(JSON.parse(line)).toMatchObject({ level: 30 });
  } finally {
    await relay.stop();
  }
});
