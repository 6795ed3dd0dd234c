import { ConfigError, loadConfig, parseSize } from '../../src/kernel/config';
import { MiB } from '../helpers/data';

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
  ['RELAY_ALLOW_ANONYMOUS', 'yes'],
  ['RELAY_JWKS_URL', 'not-a-url'],
  ['UPLOAD_MAX_CONCURRENT', '0'],
  ['UPLOAD_MAX_CONCURRENT_PER_CLIENT', 'x'],
  ['UPLOAD_MAX_FIELDS', '0'],
  ['UPLOAD_MAX_FIELD_SIZE', 'huge'],
  ['SHUTDOWN_GRACE_MS', '-5'],
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
    loadConfig({
      PORT: 'x',
      UPLOAD_PART_SIZE: '1',
      LOG_LEVEL: 'loud',
      NODE_ENV: 'production',
      RELAY_ALLOW_ANONYMOUS: 'true',
    });
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
  expect(problemsOf({ NODE_ENV: 'production', RELAY_ALLOW_ANONYMOUS: 'true' })).toEqual([
    expect.stringMatching(/^APIVIDEO_API_KEY: required when NODE_ENV=production/),
  ]);
  const production = { NODE_ENV: 'production', RELAY_ALLOW_ANONYMOUS: 'true', ...KEY };
  expect(loadConfig(production).useEmbeddedEmulator).toBe(false);
});

test('loadConfig is pure: it reads only what it is given', () => {
  process.env.UPLOAD_PART_SIZE = '99'; // would be invalid if it were read
  try {
    expect(loadConfig(KEY).upload.partSize).toBe(16 * MiB);
  } finally {
    delete process.env.UPLOAD_PART_SIZE;
  }
});

test('production without client auth: refused unless RELAY_ALLOW_ANONYMOUS=true says so on purpose', () => {
  expect(problemsOf({ NODE_ENV: 'production', ...KEY })).toEqual([
    expect.stringMatching(/^RELAY_API_TOKENS .*RELAY_ALLOW_ANONYMOUS=true/),
  ]);
  expect(
    problemsOf({ NODE_ENV: 'production', RELAY_API_TOKENS: 'a-long-enough-token-1', ...KEY }),
  ).toEqual([]);
  expect(problemsOf({ NODE_ENV: 'production', RELAY_JWT_SECRET: 'x'.repeat(32), ...KEY })).toEqual(
    [],
  );
  expect(
    problemsOf({ NODE_ENV: 'production', RELAY_JWKS_URL: 'https://idp.example/jwks', ...KEY }),
  ).toEqual([]);
  expect(problemsOf({ NODE_ENV: 'development', ...KEY })).toEqual([]);
});

test('hardening settings', () => {
  const config = loadConfig({
    ...KEY,
    RELAY_API_TOKENS: ' token-aaaaaaaaaaaaaaaa , token-bbbbbbbbbbbbbbbb ',
    CORS_ORIGINS: 'https://a.example,https://b.example',
    TRUST_PROXY: '1',
    https_proxy: 'http://u:p@proxy:3128',
    NO_PROXY: 'localhost',
  });
  expect(config.auth.apiTokens).toEqual(['token-aaaaaaaaaaaaaaaa', 'token-bbbbbbbbbbbbbbbb']);
  expect(config.http).toEqual({
    corsOrigins: ['https://a.example', 'https://b.example'],
    trustProxy: 1,
  });
  expect(config.network).toMatchObject({
    httpsProxy: 'http://u:p@proxy:3128',
    noProxy: 'localhost',
  });
  expect(config.limits).toEqual({
    maxConcurrentUploads: 1000,
    maxConcurrentPerClient: 4,
    maxFields: 32,
    maxFieldSize: 65536,
  });
  expect(config.shutdownGraceMs).toBe(60000);
});

test('RELAY_DEMO_PAGE: on outside production, off in production, either way on request', () => {
  expect(loadConfig(KEY).demoPage).toBe(true);
  const production = { ...KEY, NODE_ENV: 'production', RELAY_ALLOW_ANONYMOUS: 'true' };
  expect(loadConfig(production).demoPage).toBe(false);
  expect(loadConfig({ ...production, RELAY_DEMO_PAGE: 'true' }).demoPage).toBe(true);
  expect(loadConfig({ ...KEY, RELAY_DEMO_PAGE: 'false' }).demoPage).toBe(false);
});

test('UPLOAD_MAX_STORED_BYTES_PER_CLIENT: an eighth of the store, at least a part, never more than the store', () => {
  const share = (env: Record<string, string>) =>
    loadConfig({ ...KEY, ...env }).resumable.maxStoredBytesPerClient;
  expect(share({})).toBe(128 * MiB);
  expect(share({ UPLOAD_SESSION_STORE_MAX_BYTES: '64MiB' })).toBe(16 * MiB);
  expect(share({ UPLOAD_SESSION_STORE_MAX_BYTES: '8MiB' })).toBe(8 * MiB);
  expect(share({ UPLOAD_MAX_STORED_BYTES_PER_CLIENT: '300MiB' })).toBe(300 * MiB);
  expect(share({ UPLOAD_MAX_STORED_BYTES_PER_CLIENT: '2GiB' })).toBe(1024 * MiB);
  expect(problemsOf({ ...KEY, UPLOAD_MAX_STORED_BYTES_PER_CLIENT: '1MiB' })).toEqual([
    expect.stringMatching(/^UPLOAD_MAX_STORED_BYTES_PER_CLIENT: expected a size/),
  ]);
});
