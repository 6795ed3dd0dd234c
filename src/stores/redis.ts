/**
 * How the relay reaches Redis (the shared session store): pure helpers, so tests check what is
 * passed to ioredis and what is logged without a process or a file system.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../kernel/config';

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

/**
 * Every Redis connection of the relay (sessions, locks, tokens, webhooks), built one way: every
 * REDIS_* setting applies to all of them, and none can hang a request. A command waits at most
 * REDIS_COMMAND_TIMEOUT_MS; while Redis is away nothing is queued (503 session_store_unavailable
 * at once), and ioredis reconnects on its own when Redis is back.
 */
export function connectRedis(
  settings: RedisSettings & Pick<Config['resumable'], 'redisCommandTimeoutMs'>,
  options: { ca?: string; onTrouble?: (err: Error) => void } = {},
): Redis {
  const url = settings.redisUrl;
  if (!url) throw new Error('connectRedis needs REDIS_URL');
  const redis = new Redis(
    url,
    redisConnection(
      url,
      {
        ca: options.ca,
        maxRetriesPerRequest: 1,
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        commandTimeout: settings.redisCommandTimeoutMs,
        // Reconnect quickly, never slower than every 2 s, however long Redis was away.
        retryStrategy: (times) => Math.min(times * 100, 2000),
      },
      settings,
    ),
  );
  redis.on('error', (err: Error) => options.onTrouble?.(err));
  return redis;
}

/**
 * Whether Redis answers, not only whether a socket is open: a Redis that hangs (paused, swapping,
 * behind a dead link) keeps its connection "ready" while no command comes back. A PING every
 * `everyMs`, each bounded by the command timeout, tells; readiness (`/readyz`) and the stores
 * follow it, and it recovers by itself when the PINGs do.
 */
export class RedisHealth {
  private answering = true;
  private timer: NodeJS.Timeout | undefined;
  private inFlight = false;

  constructor(
    private readonly redis: Redis,
    private readonly everyMs = 1000,
    private readonly onChange?: (answering: boolean) => void,
  ) {}

  isReady(): boolean {
    return this.redis.status === 'ready' && this.answering;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.probe(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One PING; the result is also kept for isReady(). */
  async probe(): Promise<boolean> {
    if (this.inFlight) return this.answering;
    this.inFlight = true;
    try {
      const ok =
        this.redis.status === 'ready' &&
        (await this.redis.ping().then(
          () => true,
          () => false,
        ));
      this.set(ok);
      return ok;
    } finally {
      this.inFlight = false;
    }
  }

  private set(answering: boolean): void {
    if (answering === this.answering) return;
    this.answering = answering;
    this.onChange?.(answering);
  }
}
