/**
 * The curl, Python and Node examples of docs/clients.md, run as written against a live relay with
 * token auth: each must print a videoId whose bytes at the emulator are the file's.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MiB, tempFile, type TempFile } from '../helpers/data';
import { inspectVideo } from '../helpers/emulator';
import { useRelay } from '../helpers/fixture';
import { requirePrograms } from '../helpers/prerequisites';

const run = promisify(execFile);
const TOKEN = 'client-example-token-0123456789';
const doc = readFileSync(join(__dirname, '../../docs/clients.md'), 'utf8');
const section = (title: string) => doc.slice(doc.indexOf(`## ${title}`)).split('\n## ')[0]!;
const blocks = (title: string, lang: string) =>
  [...section(title).matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map(
    (m) => m[1]!,
  );

const fixture = useRelay({ env: { RELAY_API_TOKENS: TOKEN, LOG_LEVEL: 'warn' } });
const emulator = () => fixture.emulator;
let file: TempFile;
beforeAll(async () => (file = await tempFile(9 * MiB + 7, 'holiday.mp4')));
afterAll(() => file?.remove()); // absent when beforeAll failed

function env() {
  return {
    PATH: process.env.PATH!,
    HOME: process.env.HOME!,
    RELAY_URL: fixture.url,
    RELAY_TOKEN: TOKEN,
    VIDEO_FILE: file.path,
  };
}

function expectUploaded(stdout: string) {
  const videoId = stdout.trim().split('\n').at(-1)!;
  expect(videoId).toMatch(/^vi[A-Za-z0-9]+$/);
  expect(inspectVideo(emulator(), videoId)).toMatchObject({
    completed: true,
    size: file.size,
    sha256: file.sha256,
  });
  return inspectVideo(emulator(), videoId);
}

test('the examples are there: two curl, one Python, one Node', () => {
  expect(blocks('curl', 'bash')).toHaveLength(2);
  expect(blocks('Python', 'python')).toHaveLength(1);
  expect(blocks('Node', 'js')).toHaveLength(1);
});

test.each([0, 1])('curl example %i', async (i) => {
  requirePrograms('curl');
  const { stdout } = await run('bash', ['-c', blocks('curl', 'bash')[i]!], { env: env() });
  const seen = expectUploaded(stdout);
  expect(seen.input).toMatchObject({
    title: 'Holiday',
    tags: i === 0 ? ['beach', 'summer'] : ['beach'],
  });
});

test('Python example (requests)', async () => {
  const script = join(file.path, '..', 'example.py');
  writeFileSync(script, blocks('Python', 'python')[0]!);
  requirePrograms('python3-requests'); // Debian's, installed by .ci/run
  const { stdout } = await run('/usr/bin/python3', [script], { env: env() });
  expect(expectUploaded(stdout).input).toMatchObject({
    title: 'Holiday',
    tags: ['beach', 'summer'],
  });
});

test('tus example (tus-js-client, resumable)', async () => {
  // Written inside the project so that `import 'tus-js-client'` resolves to its node_modules.
  const dir = join(__dirname, '../.work');
  mkdirSync(dir, { recursive: true });
  const script = join(dir, 'example-tus.mjs');
  writeFileSync(script, blocks('A tus client', 'js')[0]!);
  const { stdout } = await run(process.execPath, [script], { env: env() });
  expect(expectUploaded(stdout).input).toMatchObject({
    title: 'Holiday',
    tags: ['beach', 'summer'],
  });
});

test('Node example (fetch + FormData)', async () => {
  const script = join(file.path, '..', 'example.mjs');
  writeFileSync(script, blocks('Node', 'js')[0]!);
  const { stdout } = await run(process.execPath, [script], { env: env() });
  expect(expectUploaded(stdout).input).toMatchObject({ title: 'Holiday' });
});
