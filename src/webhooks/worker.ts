import { AsyncResource } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { Webhook } from 'standardwebhooks';
import { request, type Dispatcher } from 'undici';
import type { WebhookEndpoint } from './endpoints';
import type { WebhookMetrics } from './metrics';
import type { ClaimedDelivery, OutboxStore } from './outbox';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/**
 * Waits before each retry, after the first attempt (made at once): Standard Webhooks' recommended
 * schedule, about 27 h 35 min in all, 8 attempts.
 */
export const DEFAULT_RETRY_SCHEDULE: readonly number[] = [
  5 * SECOND,
  5 * MINUTE,
  30 * MINUTE,
  2 * HOUR,
  5 * HOUR,
  10 * HOUR,
  10 * HOUR,
];

/** A receiver's Retry-After is honoured up to this, so one header cannot park an event for weeks. */
const MAX_RETRY_AFTER_MS = 24 * HOUR;
/** How much of a receiver's answer is read (and thrown away) before the connection is reused. */
const MAX_RESPONSE_BYTES = 64 * 1024;

export interface DeliveryWorkerOptions {
  store: OutboxStore;
  endpoints: WebhookEndpoint[];
  /** `whsec_…` */
  secret: string;
  timeoutMs: number;
  logger: Logger;
  /** The api.video client's: the same proxy and CA settings. */
  dispatcher?: Dispatcher;
  metrics?: WebhookMetrics;
  retrySchedule?: readonly number[];
  /** ± this fraction of each wait, so receivers recovering from an outage are not hit in lockstep. */
  jitter?: number;
  /** How often the outbox is looked at for what other replicas recorded (or leases that ran out). */
  pollMs?: number;
  /** Attempts in flight at once in this process. */
  concurrency?: number;
}

/** What became of one attempt (or of a delivery dropped without one). */
export interface AttemptEvent {
  webhookId: string;
  type: string;
  /** The endpoint's index in RELAY_WEBHOOK_URL; -1 when it was removed from the list. */
  endpoint: number;
  attempt: number;
  outcome: 'delivered' | 'retry' | 'gave_up' | 'endpoint_gone' | 'dropped' | 'interrupted';
  status?: number;
}

type AttemptResult =
  | { kind: 'answered'; status: number; retryAfterMs: number | undefined }
  | { kind: 'error'; reason: 'timeout' | 'network'; error: string }
  | { kind: 'interrupted' };

/**
 * Delivers the outbox's events: claims due deliveries, signs each attempt anew (receivers refuse
 * old timestamps), retries on the schedule. At least once: a delivery leaves the outbox only on a
 * 2xx, a 410, or when the schedule runs out.
 */
export class DeliveryWorker extends EventEmitter<{ attempt: [AttemptEvent] }> {
  private readonly signer: Webhook;
  private readonly endpoints: Map<string, WebhookEndpoint>;
  private readonly schedule: readonly number[];
  private readonly concurrency: number;
  private readonly leaseMs: number;
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Aborts the attempts still in flight when the drain's grace period ends. */
  private readonly interrupt = new AbortController();
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private again = false;
  private outboxDown = false;
  /**
   * Where deliveries run: the context the worker was made in (start-up), not that of the request
   * whose outcome kicked it. Otherwise a delivery, and every later one its timers lead to, would
   * belong to that request: in its trace (with the webhook URL, a credential, on a span) and on
   * its log lines.
   */
  private readonly scope = new AsyncResource('relay.webhook-deliveries');

  constructor(private readonly options: DeliveryWorkerOptions) {
    super();
    this.signer = new Webhook(options.secret);
    this.endpoints = new Map(options.endpoints.map((e) => [e.key, e]));
    this.schedule = options.retrySchedule ?? DEFAULT_RETRY_SCHEDULE;
    this.concurrency = options.concurrency ?? 8;
    // Longer than any attempt, so a lease runs out only when its worker died.
    this.leaseMs = options.timeoutMs + 30 * SECOND;
  }

  start(): void {
    this.running = true;
    this.kick();
  }

  /** Something was recorded or finished: look at the outbox now rather than at the next poll. */
  kick(): void {
    this.scope.runInAsyncScope(() => this.kickHere());
  }

  private kickHere(): void {
    if (!this.running) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.ticking = this.tick().finally(() => {
      this.ticking = undefined;
      if (this.again) this.kick();
      else void this.arm();
    });
  }

  private async tick(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.claimAndLaunch();
        if (this.outboxDown) {
          this.outboxDown = false;
          this.options.logger.info(
            { event: 'webhook_outbox_back' },
            'webhook outbox reachable again',
          );
        }
      } catch (err) {
        this.again = false; // the next poll tries again; no tight loop against a Redis that is down
        // One line per outage, not one per poll.
        if (!this.outboxDown)
          this.options.logger.warn(
            { event: 'webhook_outbox_error', err: String(err) },
            'webhook outbox unreachable; delivery resumes when it is back',
          );
        this.outboxDown = true;
        return;
      }
    } while (this.again && this.running);
  }

  /** Claims what fits and starts it; true when it filled every free slot (more may be due). */
  private async claimAndLaunch(): Promise<boolean> {
    const free = this.concurrency - this.inFlight.size;
    if (free <= 0) return false;
    const claimed = await this.options.store.claim(Date.now(), this.leaseMs, free);
    for (const delivery of claimed) this.launch(delivery);
    if (claimed.length === free) this.again = true;
    return claimed.length === free;
  }

  private launch(delivery: ClaimedDelivery): void {
    const run = this.process(delivery)
      .catch((err: unknown) => {
        // The outbox could not be updated: the lease runs out and the delivery is tried again.
        this.options.logger.warn(
          { event: 'webhook_outbox_error', webhookId: delivery.eventId, err: String(err) },
          'could not record a webhook attempt in the outbox',
        );
      })
      .finally(() => {
        this.inFlight.delete(delivery.id);
        this.kick();
      });
    this.inFlight.set(delivery.id, run);
  }

  /** Sleeps until the next due delivery, or the poll interval, whichever is sooner. */
  private async arm(): Promise<void> {
    if (!this.running) return;
    const pollMs = this.options.pollMs ?? SECOND;
    let wait = pollMs;
    try {
      const next = await this.options.store.nextDueAt();
      if (next !== undefined) wait = Math.min(pollMs, Math.max(0, next - Date.now()));
    } catch {
      // the tick reports it
    }
    if (!this.running || this.ticking) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.kick(), Math.max(wait, 5)).unref();
  }

  private async process(delivery: ClaimedDelivery): Promise<void> {
    const event = await this.attempt(delivery);
    this.emit('attempt', event);
  }

  private async attempt(delivery: ClaimedDelivery): Promise<AttemptEvent> {
    const { store, logger, metrics } = this.options;
    const endpoint = this.endpoints.get(delivery.endpoint);
    const labels = {
      event: delivery.type,
      endpoint: endpoint ? String(endpoint.index) : 'removed',
    };
    const log = { webhookId: delivery.eventId, type: delivery.type, endpoint: labels.endpoint };
    const report = (
      outcome: AttemptEvent['outcome'],
      attempt: number,
      status?: number,
    ): AttemptEvent => ({
      webhookId: delivery.eventId,
      type: delivery.type,
      endpoint: endpoint ? endpoint.index : -1,
      attempt,
      outcome,
      ...(status !== undefined && { status }),
    });
    if (!endpoint || endpoint.disabled) {
      const reason = endpoint ? 'endpoint_gone' : 'endpoint_removed';
      logger.warn(
        { ...log, event: 'webhook_dropped', reason },
        endpoint
          ? 'webhook dropped: its endpoint answered 410 Gone earlier'
          : 'webhook dropped: its endpoint is no longer in RELAY_WEBHOOK_URL',
      );
      metrics?.dropped.inc({ ...labels, reason });
      await store.complete(delivery);
      return report('dropped', delivery.attempts);
    }
    const attempt = delivery.attempts + 1;
    const started = Date.now();
    const result = await this.post(endpoint, delivery);
    const durationMs = Date.now() - started;
    if (result.kind === 'interrupted') {
      // Shutting down mid-attempt: due again at once, for the next instance (not an attempt).
      logger.info(
        { ...log, event: 'webhook_attempt', attempt, durationMs, outcome: 'interrupted' },
        'webhook attempt abandoned at the end of the drain; left in the outbox',
      );
      await store.reschedule(delivery, Date.now(), delivery.attempts);
      return report('interrupted', delivery.attempts);
    }
    const attemptLog = { ...log, event: 'webhook_attempt', attempt, durationMs };
    if (result.kind === 'answered' && result.status >= 200 && result.status < 300) {
      logger.info(
        { ...attemptLog, status: result.status, outcome: 'delivered' },
        'webhook delivered',
      );
      metrics?.delivered.inc(labels);
      await store.complete(delivery);
      return report('delivered', attempt, result.status);
    }
    if (result.kind === 'answered' && result.status === 410) {
      endpoint.disabled = true;
      logger.warn(
        { ...attemptLog, status: 410, outcome: 'endpoint_gone' },
        `webhook endpoint ${endpoint.index} answered 410 Gone: no more events are sent to it until the relay restarts`,
      );
      metrics?.dropped.inc({ ...labels, reason: 'endpoint_gone' });
      await store.complete(delivery);
      return report('endpoint_gone', attempt, 410);
    }
    const reason =
      result.kind === 'error' ? result.reason : `http_${Math.floor(result.status / 100)}xx`;
    metrics?.failedAttempts.inc({ ...labels, reason });
    const detail = result.kind === 'answered' ? { status: result.status } : { error: result.error };
    if (attempt > this.schedule.length) {
      logger.error(
        { ...attemptLog, ...detail, outcome: 'gave_up' },
        `webhook given up after ${attempt} attempts`,
      );
      metrics?.dropped.inc({ ...labels, reason: 'exhausted' });
      await store.complete(delivery);
      return report('gave_up', attempt, detail.status);
    }
    let waitMs = this.jittered(this.schedule[attempt - 1]!);
    if (result.kind === 'answered' && result.retryAfterMs !== undefined)
      waitMs = Math.max(waitMs, Math.min(result.retryAfterMs, MAX_RETRY_AFTER_MS));
    logger.warn(
      { ...attemptLog, ...detail, outcome: 'retry', retryInMs: waitMs },
      'webhook attempt failed; retrying later',
    );
    await store.reschedule(delivery, Date.now() + waitMs, attempt);
    return report('retry', attempt, detail.status);
  }

  private jittered(ms: number): number {
    const jitter = this.options.jitter ?? 0.2;
    return Math.max(0, Math.round(ms * (1 - jitter + 2 * jitter * Math.random())));
  }

  private async post(endpoint: WebhookEndpoint, delivery: ClaimedDelivery): Promise<AttemptResult> {
    const { timeoutMs } = this.options;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = AbortSignal.any([timeout, this.interrupt.signal]);
    const now = new Date();
    try {
      // undici's request() follows no redirect: a 3xx is an answer, so a failed attempt.
      const res = await request(endpoint.target, {
        method: 'POST',
        dispatcher: this.options.dispatcher,
        signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'apivideo-upload-relay-webhooks',
          'webhook-id': delivery.eventId,
          'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
          'webhook-signature': this.signer.sign(delivery.eventId, now, delivery.body),
          ...(endpoint.authorization && { authorization: endpoint.authorization }),
        },
        body: delivery.body,
      });
      await res.body.dump({ limit: MAX_RESPONSE_BYTES }).catch(() => undefined);
      return {
        kind: 'answered',
        status: res.statusCode,
        retryAfterMs: parseRetryAfter(res.headers['retry-after']),
      };
    } catch (err) {
      if (this.interrupt.signal.aborted) return { kind: 'interrupted' };
      if (timeout.aborted) return { kind: 'error', reason: 'timeout', error: 'timed out' };
      const code = (err as { code?: unknown }).code;
      return {
        kind: 'error',
        reason: 'network',
        error: typeof code === 'string' ? code : String(err),
      };
    }
  }

  /**
   * Stops taking new work and delivers what is due within `graceMs`; attempts still running then
   * are abandoned, and everything not delivered stays in the outbox for the next instance.
   */
  async flush(graceMs: number): Promise<{ delivered: number; left: number }> {
    this.running = false;
    clearTimeout(this.timer);
    let deadlineTimer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      deadlineTimer = setTimeout(resolve, graceMs);
    });
    await Promise.race([this.ticking, deadline]);
    let timedOut = false;
    void deadline.then(() => (timedOut = true));
    let delivered = 0;
    const before = await Promise.race([this.options.store.stats(), deadline]).catch(
      () => undefined,
    );
    try {
      while (!timedOut) {
        await this.claimAndLaunch();
        if (this.inFlight.size === 0) break;
        await Promise.race([Promise.race(this.inFlight.values()), deadline]);
      }
    } catch (err) {
      this.options.logger.warn({ err: String(err) }, 'webhook outbox unreachable during the drain');
    }
    this.interrupt.abort();
    await Promise.allSettled([...this.inFlight.values()]);
    clearTimeout(deadlineTimer);
    const after = await this.options.store.stats().catch(() => undefined);
    if (before && after) delivered = Math.max(0, before.pending - after.pending);
    return { delivered, left: after?.pending ?? -1 };
  }
}

/** Retry-After in seconds or as an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (!text) return undefined;
  if (/^\d+$/.test(text.trim())) return Number(text.trim()) * SECOND;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}
