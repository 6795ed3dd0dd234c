/**
 * docs/clients.md's examples when things go wrong, and without a token: curl and Python must fail
 * visibly (non-zero exit, the problem shown), and the Python, Node and tus examples must work
 * against a relay that has no client auth.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { RunningEmulator } from '../../src/emulator/app';
import { MiB, tempFile, type TempFile } from '../helpers/data';
import { inspectVideo, startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';

const run = promisify(execFile);
const TOKEN = 'client-example-token-0123456789';
const doc = readFileSync(join(__dirname, '../../docs/clients.md'), 'utf8');
const section = (title: string) => doc.slice(doc.indexOf(`## ${title}`)).split('\n## ')[0]!;
const block = (title: string, lang: string, i = 0) =>
  [...section(title).matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))][i]![1]!;

let emulator: RunningEmulator;
let guarded: TestRelay;
let open: TestRelay;
let file: TempFile;
beforeAll(async () => {
  emulator = await startTestEmulator();
  guarded = await startTestRelay(emulator, { env: { RELAY_API_TOKENS: TOKEN, LOG_LEVEL: 'warn' } });
  open = await startTestRelay(emulator, { env: { LOG_LEVEL: 'warn' } });
  file = await tempFile(6 * MiB + 5, 'holiday.mp4');
});
afterAll(async () => {
  await guarded.close();
  await open.close();
  await emulator.close();
  await file.remove();
});

function env(relay: TestRelay, token?: string): Record<string, string> {
  return {
    PATH: process.env.PATH!,
    HOME: process.env.HOME!,
    RELAY_URL: relay.url,
    VIDEO_FILE: file.path,
    ...(token ? { RELAY_TOKEN: token } : {}),
  };
}

/** Runs a command that must fail; returns its exit code and output. */
async function failing(command: string, args: string[], environment: Record<string, string>) {
  try {
    await run(command, args, { env: environment });
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, output: e.stdout + e.stderr };
  }
  throw new Error(`${command} succeeded where it must fail`);
}

test.each([0, 1])(
  'curl example %i: a refused upload exits non-zero and shows the problem',
  async (i) => {
    const { code, output } = await failing(
      'bash',
      ['-c', block('curl', 'bash', i)],
      env(guarded, 'a-wrong-token-0123456789'),
    );
    expect(code).not.toBe(0);
    expect(output).toContain('"code":"unauthorized"');
  },
);

test('Python example: a refused upload exits non-zero with title, detail and code', async () => {
  const script = join(file.path, '..', 'example.py');
  writeFileSync(script, block('Python', 'python'));
  const { code, output } = await failing(
    '/usr/bin/python3',
    [script],
    env(guarded, 'a-wrong-token-0123456789'),
  );
  expect(code).toBe(1);
  expect(output.trim()).toMatch(/^Missing or invalid credentials: .+ \(unauthorized\)$/);
});

async function uploadedWithoutToken(stdout: string) {
  const videoId = stdout.trim().split('\n').at(-1)!;
  expect(videoId).toMatch(/^vi[A-Za-z0-9]+$/);
  expect(inspectVideo(emulator, videoId)).toMatchObject({ completed: true, sha256: file.sha256 });
}

test('Python example without RELAY_TOKEN, on a relay without client auth', async () => {
  const script = join(file.path, '..', 'example.py');
  writeFileSync(script, block('Python', 'python'));
  const { stdout } = await run('/usr/bin/python3', [script], { env: env(open) });
  await uploadedWithoutToken(stdout);
});

test('Node example without RELAY_TOKEN', async () => {
  const script = join(file.path, '..', 'example.mjs');
  writeFileSync(script, block('Node', 'js'));
  const { stdout } = await run(process.execPath, [script], { env: env(open) });
  await uploadedWithoutToken(stdout);
});

test('tus example without RELAY_TOKEN', async () => {
  const dir = join(__dirname, '../.work');
  mkdirSync(dir, { recursive: true });
  const script = join(dir, 'example-tus-no-token.mjs');
  writeFileSync(script, block('A tus client', 'js'));
  const { stdout } = await run(process.execPath, [script], { env: env(open) });
  await uploadedWithoutToken(stdout);
});
