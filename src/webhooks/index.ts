import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Dispatcher } from 'undici';
import type { Config } from '../kernel/config';
import { webhookEndpoints } from './endpoints';
import { WebhookMetrics } from './metrics';
import { HoldingOutbox, MemoryOutbox, RedisOutbox, type OutboxStore } from './outbox';
import { WebhookSink } from './sink';
import { DeliveryWorker } from './worker';

export { WebhookSink } from './sink';
export { DeliveryWorker } from './worker';

export interface Webhooks {
  sink: WebhookSink;
  worker: DeliveryWorker;
  store: OutboxStore;
}

export interface CreateWebhooksOptions {
  settings: Config['webhooks'];
  logger: Logger;
  /**
   * The outbox in Redis when given (durable, shared by replicas); in memory otherwise. Give it a
   * `commandTimeout`: the engine awaits the outbox's write before answering the client.
   */
  redis?: Redis;
  /** Key prefix in Redis. */
  prefix?: string;
  /** Quit `redis` when the outbox closes. */
  ownsRedis?: boolean;
  dispatcher?: Dispatcher;
  /** The relay's metrics registry. */
  registry?: Registry;
  retrySchedule?: readonly number[];
  pollMs?: number;
  concurrency?: number;
}

/** The outbox, the sink that writes to it and the worker that empties it; undefined when no URL is set. */
export function createWebhooks(options: CreateWebhooksOptions): Webhooks | undefined {
  const { settings, logger } = options;
  if (settings.urls.length === 0 || !settings.secret) return undefined;
  const metrics = options.registry ? new WebhookMetrics(options.registry) : undefined;
  const endpoints = webhookEndpoints(settings.urls);
  const store: OutboxStore = options.redis
    ? new HoldingOutbox(
        new RedisOutbox(options.redis, {
          prefix: options.prefix ?? 'apivideo-relay:webhooks:',
          ownsConnection: options.ownsRedis,
        }),
        {
          onHold: (err) =>
            logger.error(
              { event: 'webhook_outbox_unavailable', err: String(err) },
              'Redis cannot store webhook events: holding them in memory until it is back (lost if this process stops first)',
            ),
          onRestored: (count) =>
            logger.info(
              { event: 'webhook_outbox_restored', count },
              'webhook events held in memory are in Redis again',
            ),
          onEvict: (d) => {
            logger.error(
              { event: 'webhook_dropped', webhookId: d.eventId, type: d.type, reason: 'evicted' },
              'webhook dropped: too many held while Redis is away',
            );
            metrics?.dropped.inc({ event: d.type, endpoint: 'unknown', reason: 'evicted' });
          },
        },
      )
    : new MemoryOutbox({
        onEvict: (d) => {
          logger.error(
            { event: 'webhook_dropped', webhookId: d.eventId, type: d.type, reason: 'evicted' },
            'webhook dropped: the in-memory outbox is full (set REDIS_URL for a durable one)',
          );
          metrics?.dropped.inc({ event: d.type, endpoint: 'unknown', reason: 'evicted' });
        },
      });
  metrics?.observe(store);
  const worker = new DeliveryWorker({
    store,
    endpoints,
    secret: settings.secret,
    timeoutMs: settings.timeoutMs,
    logger,
    dispatcher: options.dispatcher,
    metrics,
    retrySchedule: options.retrySchedule,
    pollMs: options.pollMs,
    concurrency: options.concurrency,
  });
  const sink = new WebhookSink({
    store,
    endpoints,
    events: settings.events,
    onRecorded: () => worker.kick(),
  });
  return { sink, worker, store };
}
