/** What the relay passes to ioredis, and the session-store line it logs at start-up. */
import { describeSessionStore, redisConnection } from '../../src/redis';

const resumable = (redisUrl?: string, redisCaFile?: string) => ({
  redisUrl,
  redisCaFile,
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
