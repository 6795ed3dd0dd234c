/**
 * The composition root: every part of the relay, built from the configuration in one place, for
 * `main.ts` and the tests alike. Nothing here reads the environment or the file system.
 */
import type express from 'express';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import type { ApiVideoClient } from './apivideo/client';
import { createApp } from './app';
import type { Config } from './kernel/config';
import { failingFast } from './kernel/errors';
import type { Readiness } from './http/health';
import { Lifecycle } from './kernel/lifecycle';
import { RelayMetrics } from './kernel/metrics';
import { RedisHealth, connectRedis } from './stores/redis';
import { MemorySessionStore, RedisSessionStore, type SessionStore } from './stores/session-store';
import { MemoryLocker, RedisLocker, type UploadLocker } from './stores/upload-lock';
import { UploadSessions } from './sessions/upload-sessions';
import { UploadEngine } from './engine/engine';
import { MemoryBudget } from './engine/memory-budget';
import type { OutcomeSink } from './engine/outcome';
import { OutcomeRecorder, metricsObserver } from './engine/outcome-recorder';
import { RedisUploadTokenStore } from './stores/redis-upload-token-store';
import { MemoryUploadTokenStore } from './stores/upload-token-store';
import { UploadTokens } from './upload-tokens/tokens';
import { tracing } from './kernel/trace-points';
import { TokenUseSettlement } from './upload-tokens/use-settlement';
import { createWebhooks, type Webhooks } from './webhooks';
import type { WebhookSink } from './webhooks/sink';
import { UPLOAD_OVERHEAD_BYTES } from './kernel/sizes';
import { parseSession, type UploadSession } from './sessions/session';

export interface RelayParts {
  config: Config;
  logger: Logger;
  apivideo: ApiVideoClient;
  /** Whether api.video accepts the key (the key check); the relay adds its own conditions. */
  readiness: Readiness;
  /** For webhook deliveries: the same proxy and CA settings as api.video's calls. */
  dispatcher?: Dispatcher;
  /** What GET /v1/info tells about the upstream. */
  upstream?: 'emulator' | 'api.video';
  /** REDIS_CA_FILE's PEM (main.ts reads files). */
  redisCa?: string;
  publicDir?: string;
  /** Seams for tests: parts built elsewhere instead of from the configuration. */
  lifecycle?: Lifecycle;
  metrics?: RelayMetrics;
  memoryBudget?: MemoryBudget;
  uploadTokens?: UploadTokens;
  /** Consumers of every outcome besides the log line, the metrics and the configured webhooks. */
  outcomeSinks?: OutcomeSink[];
  /** Replaces the configured webhooks' sink for `POST /v1/webhooks/test`. */
  webhookSink?: WebhookSink;
  /** Webhook delivery's timing (tests shorten it). */
  webhookDelivery?: { retrySchedule?: readonly number[]; pollMs?: number };
}

export interface Relay {
  app: express.Express;
  config: Config;
  lifecycle: Lifecycle;
  metrics: RelayMetrics;
  memoryBudget: MemoryBudget;
  engine: UploadEngine;
  sessions: UploadSessions;
  uploadTokens: UploadTokens;
  webhooks: Webhooks | undefined;
  /** /readyz: api.video accepts the key, Redis answers (when used), and no drain is running. */
  isReady(): boolean;
  /** Background work: the Redis probe, webhook delivery, the expiry sweep on a timer. */
  start(): void;
  /** Ends the uploads past their expiry now (start() does it on a timer). */
  sweep(): Promise<number>;
  /**
   * Stops the background work and closes the connections it opened; webhook events due are
   * delivered for up to `webhookGraceMs` first (the rest stay in the outbox).
   */
  close(webhookGraceMs?: number): Promise<{ delivered: number; left: number } | undefined>;
}

export function createRelay(parts: RelayParts): Relay {
  const { config, logger } = parts;
  const metrics = parts.metrics ?? new RelayMetrics();
  const lifecycle = parts.lifecycle ?? new Lifecycle();
  const memoryBudget =
    parts.memoryBudget ??
    new MemoryBudget(config.upload.memoryBudget, {
      perUpload: UPLOAD_OVERHEAD_BYTES,
      // However many uploads are in progress, two parts still fit beside their costs.
      keepForParts: 2 * config.upload.partSize,
      perPrincipal: config.upload.memoryPerClient,
      waitMs: config.upload.memoryWaitMs,
      minRate: config.upload.minRate,
    });
  metrics.watchBudget(memoryBudget);

  const redis = config.resumable.redisUrl ? redisParts(parts) : undefined;
  const prefix = config.resumable.redisKeyPrefix;
  const store: SessionStore<UploadSession> = redis
    ? new RedisSessionStore(redis.main, parseSession, prefix, () => redis.health.isReady())
    : new MemorySessionStore(parseSession);
  const locker: UploadLocker = redis
    ? new RedisLocker(redis.main, prefix, () => redis.health.isReady())
    : new MemoryLocker();
  // Tokens share the sessions' Redis, so any replica accepts a token any other minted.
  const uploadTokens =
    parts.uploadTokens ??
    new UploadTokens(
      redis
        ? failingFast(new RedisUploadTokenStore(redis.main, `${prefix}upload-token:`), () =>
            redis.health.isReady(),
          )
        : new MemoryUploadTokenStore(),
    );
  const webhooks = createWebhooks({
    settings: config.webhooks,
    logger,
    redis: redis && config.webhooks.urls.length > 0 ? redis.webhooks() : undefined,
    prefix: `${prefix}webhooks:`,
    ownsRedis: true,
    dispatcher: parts.dispatcher,
    registry: metrics.registry,
    ...parts.webhookDelivery,
  });
  if (webhooks && !redis)
    logger.warn(
      'REDIS_URL is not set: webhook events wait in this process memory, and those not yet delivered are lost if it stops',
    );
  const observer = metricsObserver(metrics);
  const engine = new UploadEngine({
    client: parts.apivideo,
    settings: config.upload,
    budget: memoryBudget,
    observer,
    sinks: [
      new OutcomeRecorder(metrics, logger),
      new TokenUseSettlement(uploadTokens, logger),
      ...(webhooks ? [webhooks.sink] : []),
      // How the upload ended, on the span of the request that ended it (when traces are on).
      ...(tracing() ? [tracing()!.outcomes] : []),
      ...(parts.outcomeSinks ?? []),
    ],
    logger,
  });
  const sessions = new UploadSessions(store, locker, engine, config.resumable.sessionTtlMs, logger);
  const sessionStoreUp = () => redis?.health.isReady() ?? true;
  const isReady = () => !lifecycle.draining && parts.readiness.isReady() && sessionStoreUp();
  metrics.watchHealth({
    ready: isReady,
    apivideo: () => parts.readiness.isReady(),
    sessionStore: sessionStoreUp,
  });
  const app = createApp({
    config,
    logger,
    apivideo: parts.apivideo,
    readiness: { isReady },
    lifecycle,
    metrics,
    memoryBudget,
    engine,
    observer,
    sessions,
    uploadTokens,
    webhooks: parts.webhookSink ?? webhooks?.sink,
    upstream: parts.upstream,
    publicDir: parts.publicDir,
  });

  let sweeper: NodeJS.Timeout | undefined;
  const sweep = () => sessions.sweep();
  return {
    app,
    config,
    lifecycle,
    metrics,
    memoryBudget,
    engine,
    sessions,
    uploadTokens,
    webhooks,
    isReady,
    start() {
      redis?.health.start();
      webhooks?.worker.start();
      sweeper ??= setInterval(
        () =>
          void sweep().catch((err: unknown) =>
            logger.warn({ err: String(err) }, 'could not sweep expired uploads'),
          ),
        Math.min(60_000, config.resumable.sessionTtlMs),
      ).unref();
    },
    sweep,
    async close(webhookGraceMs = 0) {
      clearInterval(sweeper);
      redis?.health.stop();
      const flushed = await webhooks?.worker.flush(webhookGraceMs);
      await Promise.allSettled([webhooks?.store.close(), store.close()]);
      return flushed;
    },
  };
}

/** The connections to REDIS_URL: one for sessions, locks and tokens, one for webhooks. */
function redisParts(parts: RelayParts): {
  main: Redis;
  webhooks: () => Redis;
  health: RedisHealth;
} {
  const { config, logger } = parts;
  const onTrouble = (err: Error) =>
    logger.warn({ event: 'redis_trouble', err: err.message }, 'Redis connection trouble');
  const settings = config.resumable;
  const main = connectRedis(settings, { ca: parts.redisCa, onTrouble });
  // Webhook claims never queue behind upload traffic on a connection of their own; while Redis is
  // away, events are held in memory (src/webhooks/outbox.ts, HoldingOutbox).
  const webhooks = () => connectRedis(settings, { ca: parts.redisCa, onTrouble });
  const health = new RedisHealth(main, 1000, (answering) =>
    answering
      ? logger.info({ event: 'redis_answering' }, 'Redis answers again')
      : logger.error(
          { event: 'redis_not_answering' },
          `Redis does not answer within ${settings.redisCommandTimeoutMs} ms: resumable uploads and upload tokens answer 503 until it does`,
        ),
  );
  return { main, webhooks, health };
}
