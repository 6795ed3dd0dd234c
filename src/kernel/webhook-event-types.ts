/**
 * Every event the relay sends (src/webhooks): names are public, receivers switch on them. Here,
 * apart from the webhooks, because the configuration names them too (RELAY_WEBHOOK_EVENTS).
 */
export const WEBHOOK_EVENT_TYPES = [
  'upload.completed',
  'upload.failed',
  'upload.expired',
  'webhook.test',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

export function isWebhookEventType(text: string): text is WebhookEventType {
  return (WEBHOOK_EVENT_TYPES as readonly string[]).includes(text);
}
