import { ConfigError, loadConfig, parseSize } from '../../src/config';

const MiB = 1024 * 1024;
const KEY = { APIVIDEO_API_KEY: 'k-123456' };

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

test('defaults', () => {
  const config = loadConfig(KEY);
  expect(config).toMatchObject({
    port: 3000,
    host: '0.0.0.0',
    nodeEnv: 'development',
    logLevel: 'info',
    apivideo: {
      apiKey: 'k-123456',
      baseUrl: 'https://ws.api.video',
      authScheme: 'basic',
      maxAttempts: 5,
    },
    useEmbeddedEmulator: false,
    upload: {
      partSize: 16 * MiB,
      partConcurrency: 2,
      maxFileSize: 0,
      requestTimeoutMs: 0,
      idleTimeoutMs: 60000,
    },
  });
});

test.each([
  ['16777216', 16 * MiB],
  ['16MiB', 16 * MiB],
  ['16 MiB', 16 * MiB],
  ['5mib', 5 * MiB],
  ['1.5GiB', 1.5 * 1024 * MiB],
  ['20MB', 20_000_000],
  ['64k', 64_000],
  ['0', 0],
])('parseSize(%j) = %d', (text, bytes) => {
  expect(parseSize(text)).toBe(bytes);
});

test.each(['', 'MiB', '-5', '5 parsecs', '1e9', '0x10'])('parseSize(%j) is unreadable', (text) => {
  expect(parseSize(text)).toBeUndefined();
});

test.each([
  ['PORT', 'eighty'],
  ['PORT', '70000'],
  ['APIVIDEO_BASE_URL', 'ftp://x'],
  ['APIVIDEO_BASE_URL', 'not a url'],
  ['APIVIDEO_AUTH', 'digest'],
  ['UPLOAD_PART_SIZE', '4MiB'],
  ['UPLOAD_PART_SIZE', '129MiB'],
  ['UPLOAD_PART_SIZE', 'big'],
  ['UPLOAD_PART_CONCURRENCY', '0'],
  ['UPLOAD_PART_CONCURRENCY', '9'],
  ['UPLOAD_MAX_FILE_SIZE', 'lots'],
  ['UPSTREAM_MAX_ATTEMPTS', '0'],
  ['LOG_LEVEL', 'loud'],
  ['NODE_ENV', 'staging'],
  ['UPLOAD_REQUEST_TIMEOUT_MS', '-1'],
  ['UPLOAD_IDLE_TIMEOUT_MS', 'soon'],
])('%s=%j is reported by name', (name, value) => {
  const problems = problemsOf({ ...KEY, [name]: value });
  expect(problems).toHaveLength(1);
  expect(problems[0]).toMatch(
    new RegExp(`^${name}: .*"${value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"`),
  );
});

test('every problem is reported at once, in one readable message', () => {
  let error: ConfigError | undefined;
  try {
    loadConfig({ PORT: 'x', UPLOAD_PART_SIZE: '1', LOG_LEVEL: 'loud', NODE_ENV: 'production' });
  } catch (err) {
    error = err as ConfigError;
  }
  expect(error?.problems.map((p) => p.split(':')[0])).toEqual([
    'APIVIDEO_API_KEY',
    'PORT',
    'LOG_LEVEL',
    'UPLOAD_PART_SIZE',
  ]);
  expect(error?.message.split('\n')).toHaveLength(5);
});

test('no key outside production: the embedded emulator stands in', () => {
  expect(loadConfig({}).useEmbeddedEmulator).toBe(true);
  expect(loadConfig({ NODE_ENV: 'test' }).useEmbeddedEmulator).toBe(true);
});

test('no key in production: refused, never the emulator', () => {
  expect(problemsOf({ NODE_ENV: 'production' })).toEqual([
    expect.stringMatching(/^APIVIDEO_API_KEY: required when NODE_ENV=production/),
  ]);
  expect(loadConfig({ NODE_ENV: 'production', ...KEY }).useEmbeddedEmulator).toBe(false);
});

test('loadConfig is pure: it reads only what it is given', () => {
  process.env.UPLOAD_PART_SIZE = '99'; // would be invalid if it were read
  try {
    expect(loadConfig(KEY).upload.partSize).toBe(16 * MiB);
  } finally {
    delete process.env.UPLOAD_PART_SIZE;
  }
});
