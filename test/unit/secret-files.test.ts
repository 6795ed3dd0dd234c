/** `NAME_FILE` settings (Docker and Kubernetes secrets): pure, with a fake file system. */
import { ConfigError, loadConfig, readSecretFiles, SECRET_SETTINGS } from '../../src/kernel/config';

const enoent = (path: string) =>
  Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), {
    code: 'ENOENT',
  });

/** A fake readFile over a map of paths; unknown paths fail as fs does. */
function files(map: Record<string, string>) {
  const read: string[] = [];
  const readFile = (path: string) => {
    read.push(path);
    if (!(path in map)) throw enoent(path);
    return map[path]!;
  };
  return { readFile, read };
}

function problemsOf(env: Record<string, string>, map: Record<string, string>): string[] {
  const { env: resolved, problems } = readSecretFiles(env, files(map).readFile);
  try {
    loadConfig(resolved, problems);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

test('the secret settings that take a _FILE twin are the ones the issues name', () => {
  expect([...SECRET_SETTINGS]).toEqual(
    expect.arrayContaining([
      'APIVIDEO_API_KEY',
      'RELAY_API_TOKENS',
      'RELAY_JWT_SECRET',
      'METRICS_TOKEN',
      'RELAY_WEBHOOK_SECRET',
    ]),
  );
});

test('each NAME_FILE becomes NAME for loadConfig, with the trailing newline dropped', () => {
  const fs = files({
    '/run/secrets/key': 'k-from-a-file\n',
    '/run/secrets/tokens': 'token-one-0123456789\ntoken-two-0123456789\n',
    '/run/secrets/jwt': 'j'.repeat(40) + '\r\n',
    '/run/secrets/metrics': 'metrics-token-0123',
    '/run/secrets/redis': 'rediss://:pw-from-file@redis.example:6380/2\n',
  });
  const { env, problems } = readSecretFiles(
    {
      NODE_ENV: 'production',
      APIVIDEO_API_KEY_FILE: '/run/secrets/key',
      RELAY_API_TOKENS_FILE: '/run/secrets/tokens',
      RELAY_JWT_SECRET_FILE: '/run/secrets/jwt',
      METRICS_TOKEN_FILE: '/run/secrets/metrics',
      REDIS_URL_FILE: '/run/secrets/redis',
    },
    fs.readFile,
  );
  expect(problems).toEqual([]);
  expect(env).not.toHaveProperty('APIVIDEO_API_KEY_FILE');
  const config = loadConfig(env, problems);
  expect(config.apivideo.apiKey).toBe('k-from-a-file');
  // One token per line in a file, as comma-separated in the variable.
  expect(config.auth.apiTokens).toEqual(['token-one-0123456789', 'token-two-0123456789']);
  expect(config.auth.jwtSecret).toBe('j'.repeat(40));
  expect(config.auth.metricsToken).toBe('metrics-token-0123');
  expect(config.resumable.redisUrl).toBe('rediss://:pw-from-file@redis.example:6380/2');
  expect(config.useEmbeddedEmulator).toBe(false);
});

test('RELAY_WEBHOOK_SECRET_FILE is resolved like the others', () => {
  const { env } = readSecretFiles(
    { RELAY_WEBHOOK_SECRET_FILE: '/s/webhook' },
    files({ '/s/webhook': 'whsec-0123456789abcdef\n' }).readFile,
  );
  expect(env.RELAY_WEBHOOK_SECRET).toBe('whsec-0123456789abcdef');
});

test('no _FILE set: nothing is read and the environment passes through unchanged', () => {
  const fs = files({});
  const input = { APIVIDEO_API_KEY: 'k-123456', PORT: '8080' };
  const { env, problems } = readSecretFiles(input, fs.readFile);
  expect(env).toEqual(input);
  expect(problems).toEqual([]);
  expect(fs.read).toEqual([]);
});

test('NAME and NAME_FILE both set: a configuration error, and the file is not read', () => {
  const fs = files({ '/s/key': 'k-from-file' });
  const { problems } = readSecretFiles(
    { APIVIDEO_API_KEY: 'k-in-env-secret', APIVIDEO_API_KEY_FILE: '/s/key' },
    fs.readFile,
  );
  expect(problems).toEqual([
    'APIVIDEO_API_KEY and APIVIDEO_API_KEY_FILE are both set: set one of them',
  ]);
  expect(fs.read).toEqual([]);
  expect(problems.join('\n')).not.toContain('k-in-env-secret');
});

test('an unreadable or empty file names the setting and the path, and is reported with every other problem', () => {
  const problems = problemsOf(
    {
      NODE_ENV: 'production',
      RELAY_ALLOW_ANONYMOUS: 'true',
      APIVIDEO_API_KEY_FILE: '/run/secrets/missing',
      METRICS_TOKEN_FILE: '/run/secrets/empty',
      PORT: 'eighty',
    },
    { '/run/secrets/empty': '\n' },
  );
  expect(problems).toEqual(
    expect.arrayContaining([
      'APIVIDEO_API_KEY_FILE: cannot read "/run/secrets/missing" (ENOENT)',
      'METRICS_TOKEN_FILE: "/run/secrets/empty" is empty',
      expect.stringMatching(/^PORT: /),
    ]),
  );
});

test('a secret from a file that fails validation is reported without its value', () => {
  const problems = problemsOf(
    { APIVIDEO_API_KEY: 'k-123456', RELAY_JWT_SECRET_FILE: '/s/jwt', REDIS_URL_FILE: '/s/redis' },
    { '/s/jwt': 'too-short-secret', '/s/redis': 'http://:hunter2hunter2@redis:6379' },
  );
  expect(problems).toHaveLength(2);
  expect(problems.join('\n')).toMatch(/RELAY_JWT_SECRET: must be at least 32/);
  expect(problems.join('\n')).toMatch(/REDIS_URL: expected a redis:\/\/ or rediss:\/\/ URL/);
  expect(problems.join('\n')).not.toContain('too-short-secret');
  expect(problems.join('\n')).not.toContain('hunter2');
});

test('REDIS_CA_FILE needs a rediss:// URL', () => {
  expect(() =>
    loadConfig({ REDIS_URL: 'redis://redis:6379', REDIS_CA_FILE: '/etc/redis-ca.pem' }),
  ).toThrow(/REDIS_CA_FILE: only used with a rediss:\/\/ \(TLS\) REDIS_URL/);
  expect(
    loadConfig({ REDIS_URL: 'rediss://redis:6380', REDIS_CA_FILE: '/etc/redis-ca.pem' }).resumable,
  ).toMatchObject({ redisUrl: 'rediss://redis:6380', redisCaFile: '/etc/redis-ca.pem' });
});

test('REDIS_SENTINELS: host:port pairs, with a REDIS_URL for the password, database and TLS', () => {
  expect(
    loadConfig({
      REDIS_URL: 'redis://:pw@unused:6379',
      REDIS_SENTINELS: 'sentinel-a:26379, 10.0.0.2:26380,[::1]:26381',
      REDIS_SENTINEL_NAME: 'relay',
    }).resumable,
  ).toMatchObject({
    redisSentinels: [
      { host: 'sentinel-a', port: 26379 },
      { host: '10.0.0.2', port: 26380 },
      { host: '::1', port: 26381 },
    ],
    redisSentinelName: 'relay',
  });
  expect(loadConfig({ REDIS_URL: 'redis://r:6379' }).resumable).toMatchObject({
    redisSentinels: [],
    redisSentinelName: 'mymaster',
  });
  expect(problemsOf({ REDIS_SENTINELS: 'sentinel-a' }, {})).toEqual([
    'REDIS_SENTINELS: expected host:port pairs, comma-separated',
  ]);
  expect(problemsOf({ REDIS_SENTINELS: 'sentinel-a:26379' }, {})).toEqual([
    'REDIS_SENTINELS: needs REDIS_URL too (its password, database and rediss:// apply to the primary the Sentinels name)',
  ]);
});
