import { Counter, Gauge, type Registry } from 'prom-client';
import type { OutboxStore } from './outbox';

/**
 * Webhook delivery metrics, registered on the relay's registry. Labels are bounded: the event type
 * (a fixed list), the endpoint's index in RELAY_WEBHOOK_URL (never its URL) and a fixed reason.
 */
export class WebhookMetrics {
  readonly delivered: Counter<'event' | 'endpoint'>;
  readonly failedAttempts: Counter<'event' | 'endpoint' | 'reason'>;
  readonly dropped: Counter<'event' | 'endpoint' | 'reason'>;
  private store: OutboxStore | undefined;

  constructor(registry: Registry) {
    const registers = [registry];
    this.delivered = new Counter({
      name: 'relay_webhook_deliveries_total',
      help: 'Webhook events delivered (the receiver answered 2xx)',
      labelNames: ['event', 'endpoint'],
      registers,
    });
    this.failedAttempts = new Counter({
      name: 'relay_webhook_failed_attempts_total',
      help: 'Webhook delivery attempts that failed (retried later unless the schedule ran out)',
      labelNames: ['event', 'endpoint', 'reason'],
      registers,
    });
    this.dropped = new Counter({
      name: 'relay_webhook_dropped_total',
      help: 'Webhook events given up on: schedule exhausted, endpoint gone (410), endpoint removed from the settings, or evicted from a full in-memory outbox',
      labelNames: ['event', 'endpoint', 'reason'],
      registers,
    });
    // Read from the outbox at scrape time: with Redis, the pending events of every replica.
    const stats = async () => {
      try {
        return await this.store?.stats();
      } catch {
        return undefined; // an unreachable Redis leaves the last value rather than failing /metrics
      }
    };
    new Gauge({
      name: 'relay_webhook_pending',
      help: 'Webhook deliveries waiting in the outbox (one per event and endpoint)',
      registers,
      async collect() {
        const s = await stats();
        if (s) this.set(s.pending);
      },
    });
    new Gauge({
      name: 'relay_webhook_oldest_pending_age_seconds',
      help: 'Age of the oldest webhook delivery still waiting in the outbox (0 when none)',
      registers,
      async collect() {
        const s = await stats();
        if (s)
          this.set(s.oldestCreatedAt === undefined ? 0 : (Date.now() - s.oldestCreatedAt) / 1000);
      },
    });
  }

  observe(store: OutboxStore): void {
    this.store = store;
  }
}
