import { createHash } from 'node:crypto';

/**
 * A receiver from RELAY_WEBHOOK_URL. Logs and metrics name it by its index in that list, never
 * by URL (a URL can carry a credential); the outbox by a hash of the URL, so a delivery still goes
 * to the same receiver after the list is reordered, and to none once it is removed.
 */
export class WebhookEndpoint {
  readonly key: string;
  /** The URL without its credentials: undici would drop them silently. */
  readonly target: string;
  /** `Basic …` when the URL carries `user:password@`. */
  readonly authorization: string | undefined;
  /** Set when the receiver answered 410 Gone: nothing more is sent to it until a restart. */
  disabled = false;

  constructor(
    readonly index: number,
    readonly url: string,
  ) {
    this.key = createHash('sha256').update(url).digest('hex').slice(0, 16);
    const parsed = new URL(url);
    const user = decodeURIComponent(parsed.username);
    const password = decodeURIComponent(parsed.password);
    this.authorization =
      user || password
        ? `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
        : undefined;
    parsed.username = '';
    parsed.password = '';
    this.target = parsed.toString();
  }
}

export function webhookEndpoints(urls: readonly string[]): WebhookEndpoint[] {
  return urls.map((url, index) => new WebhookEndpoint(index, url));
}
