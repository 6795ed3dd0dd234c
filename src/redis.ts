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
/** What connecting to Redis needs of the settings. */
export type RedisSettings = Pick<
  Config['resumable'],
  'redisUrl' | 'redisCaFile' | 'redisSentinels' | 'redisSentinelName'
>;

export function redisConnection(
  url: string,
  options: { ca?: string } & Omit<RedisOptions, 'tls'>,
  sentinels: Pick<RedisSettings, 'redisSentinels' | 'redisSentinelName'> = {
    redisSentinels: [],
    redisSentinelName: 'mymaster',
  },
): RedisOptions {
  const { ca, ...rest } = options;
  const tls = url.startsWith('rediss://');
  const connection: RedisOptions = ca !== undefined && tls ? { ...rest, tls: { ca } } : rest;
  if (sentinels.redisSentinels.length === 0) return connection;
  // ioredis asks the Sentinels for the primary, and again after a failover. REDIS_URL's password
  // and database apply to the primary; the Sentinels are asked over plain TCP, without a password.
  return {
    ...connection,
    sentinels: sentinels.redisSentinels,
    name: sentinels.redisSentinelName,
    ...(tls ? { tls: ca !== undefined ? { ca } : {}, enableTLSForSentinelMode: true } : {}),
  };
}

/**
 * The session store in one line for the start-up log: where sessions live and whether they
 * outlive this process. The password (and user name) never appear.
 */
export function describeSessionStore(resumable: RedisSettings): string {
  const url = resumable.redisUrl;
  if (!url) return 'memory (one instance: resumable uploads are lost when this process stops)';
  const parsed = new URL(url);
  const db = parsed.pathname.length > 1 ? parsed.pathname : '';
  const sentinels = resumable.redisSentinels.map((s) => `${s.host}:${s.port}`).join(',');
  const where =
    sentinels !== ''
      ? `${parsed.protocol}//${resumable.redisSentinelName}${db} (the primary) via Sentinels ${sentinels}`
      : `${parsed.protocol}//${parsed.hostname}:${parsed.port || '6379'}${db}`;
  const notes = [
    parsed.password || parsed.username ? 'password hidden' : undefined,
    resumable.redisCaFile ? `CA from ${resumable.redisCaFile}` : undefined,
  ].filter(Boolean);
  return `redis ${where}${notes.length > 0 ? ` (${notes.join(', ')})` : ''}`;
}
