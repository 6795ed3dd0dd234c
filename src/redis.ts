/**
 * How the relay reaches Redis (the shared session store): pure helpers, so tests check what is
 * passed to ioredis and what is logged without a process or a file system.
 */
import type { RedisOptions } from 'ioredis';
import type { Config } from './config';

/**
 * ioredis options for REDIS_URL. `rediss://` turns TLS on by itself (against Node's CAs); a CA
 * (REDIS_CA_FILE's PEM, e.g. a managed Redis with a private CA) replaces them for Redis only.
 */
export function redisConnection(
  url: string,
  options: { ca?: string } & Omit<RedisOptions, 'tls'>,
): RedisOptions {
  const { ca, ...rest } = options;
  if (ca === undefined || !url.startsWith('rediss://')) return rest;
  return { ...rest, tls: { ca } };
}

/**
 * The session store in one line for the start-up log: where sessions live and whether they
 * outlive this process. The password (and user name) never appear.
 */
export function describeSessionStore(resumable: Config['resumable']): string {
  const url = resumable.redisUrl;
  if (!url) return 'memory (one instance: resumable uploads are lost when this process stops)';
  const parsed = new URL(url);
  const db = parsed.pathname.length > 1 ? parsed.pathname : '';
  const where = `${parsed.protocol}//${parsed.hostname}:${parsed.port || '6379'}${db}`;
  const notes = [
    parsed.password || parsed.username ? 'password hidden' : undefined,
    resumable.redisCaFile ? `CA from ${resumable.redisCaFile}` : undefined,
  ].filter(Boolean);
  return `redis ${where}${notes.length > 0 ? ` (${notes.join(', ')})` : ''}`;
}
