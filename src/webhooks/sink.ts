import type { OutcomeSink, UploadOutcome } from '../engine/outcome';
import type { WebhookEndpoint } from './endpoints';
import { eventFromOutcome, testEvent, type WebhookEvent } from './events';
import type { Delivery, OutboxStore } from './outbox';
import { type WebhookEventType } from '../kernel/webhook-event-types';

export interface WebhookSinkOptions {
  store: OutboxStore;
  endpoints: WebhookEndpoint[];
  /** RELAY_WEBHOOK_EVENTS: the upload events to send (`webhook.test` is always sent). */
  events: readonly WebhookEventType[];
  /** Told when something was added, so delivery starts at once rather than at the next poll. */
  onRecorded?: () => void;
}

/**
 * The webhooks' side of the upload engine: `record` resolves once the event is in the outbox, so
 * an upload the client was told about is never lost to a crash before its webhook went out.
 */
export class WebhookSink implements OutcomeSink {
  private readonly events: Set<WebhookEventType>;

  constructor(private readonly options: WebhookSinkOptions) {
    this.events = new Set(options.events);
  }

  async record(outcome: UploadOutcome): Promise<void> {
    const event = eventFromOutcome(outcome);
    if (!this.events.has(event.type)) return;
    await this.enqueue(event);
  }

  /** Sends `webhook.test` to every endpoint; resolves with its `webhook-id` once it is stored. */
  async sendTest(principal: string): Promise<string> {
    const event = testEvent(principal);
    await this.enqueue(event);
    return event.id;
  }

  private async enqueue(event: WebhookEvent): Promise<void> {
    const body = JSON.stringify(event.payload);
    const createdAt = Date.now();
    const deliveries: Delivery[] = this.options.endpoints
      .filter((endpoint) => !endpoint.disabled)
      .map((endpoint) => ({
        id: `${event.id}.${endpoint.key}`,
        eventId: event.id,
        type: event.type,
        body,
        endpoint: endpoint.key,
        createdAt,
        attempts: 0,
      }));
    await this.options.store.add(deliveries);
    this.options.onRecorded?.();
  }
}
