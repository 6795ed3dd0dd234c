/** What the relay passes to ioredis, and the session-store line it logs at start-up. */
import { describeSessionStore, redisConnection } from '../../src/stores/redis';

const resumable = (
  redisUrl?: string,
  redisCaFile?: string,
  redisSentinels: Array<{ host: string; port: number }> = [],
) => ({
  redisUrl,
  redisCaFile,
  redisSentinels,
  redisSentinelName: 'relay-primary',
  sessionTtlMs: 1000,
});

test.each([
  [
    undefined,
    undefined,
    'memory (one instance: resumable uploads are lost when this process stops)',
  ],
  ['redis://redis:6379', undefined, 'redis redis://redis:6379'],
  ['redis://redis', undefined, 'redis redis://redis:6379'],
  ['redis://redis:6379/3', undefined, 'redis redis://redis:6379/3'],
  [
    'rediss://default:s3cr3t-pass@cache.example.com:6380',
    '/etc/relay/redis-ca.pem',
    'redis rediss://cache.example.com:6380 (password hidden, CA from /etc/relay/redis-ca.pem)',
  ],
  ['rediss://:p%40ss@10.0.0.5:6380', undefined, 'redis rediss://10.0.0.5:6380 (password hidden)'],
])('describeSessionStore(%s, CA %s) = %s', (url, ca, line) => {
  const text = describeSessionStore(resumable(url, ca));
  expect(text).toBe(line);
  expect(text).not.toMatch(/s3cr3t|p%40ss|p@ss|default/);
});

test('a CA is passed to TLS for rediss:// only', () => {
  expect(redisConnection('rediss://r:6380', { ca: 'PEM', maxRetriesPerRequest: 3 })).toEqual({
    maxRetriesPerRequest: 3,
    tls: { ca: 'PEM' },
  });
  expect(redisConnection('rediss://r:6380', { maxRetriesPerRequest: 3 })).toEqual({
    maxRetriesPerRequest: 3,
  });
  expect(redisConnection('redis://r:6379', { ca: 'PEM' })).toEqual({});
});

test('Sentinels: ioredis asks them for the primary; the URL gives password, database and TLS', () => {
  const sentinels = { redisSentinels: [{ host: '10.0.0.1', port: 26379 }], redisSentinelName: 'p' };
  expect(
    redisConnection('redis://:pw@ignored:6379/2', { maxRetriesPerRequest: 3 }, sentinels),
  ).toEqual({
    maxRetriesPerRequest: 3,
    sentinels: [{ host: '10.0.0.1', port: 26379 }],
    name: 'p',
  });
  expect(redisConnection('rediss://:pw@ignored:6380', { ca: 'PEM' }, sentinels)).toEqual({
    sentinels: [{ host: '10.0.0.1', port: 26379 }],
    name: 'p',
    tls: { ca: 'PEM' },
    enableTLSForSentinelMode: true,
  });
  const line = describeSessionStore(
    resumable('redis://:s3cr3t-pass@ignored:6379/1', undefined, [
      { host: '10.0.0.1', port: 26379 },
      { host: 'sentinel-b', port: 26380 },
    ]),
  );
  expect(line).toBe(
    'redis redis://relay-primary/1 (the primary) via Sentinels 10.0.0.1:26379,sentinel-b:26380 (password hidden)',
  );
});
