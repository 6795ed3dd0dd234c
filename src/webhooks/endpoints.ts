import { createHash } from 'node:crypto';

/**
 * A receiver from RELAY_WEBHOOK_URL. Logs and metrics name it by its index in that list, never
 * by URL (a URL can carry a credential); the outbox by a hash of the URL, so a delivery still goes
 * to the same receiver after the list is reordered, and to none once it is removed.
 */
export class WebhookEndpoint {
  readonly key: string;
  /** Set when the receiver answered 410 Gone: nothing more is sent to it until a restart. */
  disabled = false;

  constructor(
    readonly index: number,
    readonly url: string,
  ) {
    this.key = createHash('sha256').update(url).digest('hex').slice(0, 16);
  }
}

export function webhookEndpoints(urls: readonly string[]): WebhookEndpoint[] {
  return urls.map((url, index) => new WebhookEndpoint(index, url));
}
