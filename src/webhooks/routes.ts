import { Router, type RequestHandler } from 'express';
import { RelayError } from '../errors';
import { principalOf } from '../http/client-auth';
import type { WebhookSink } from './sink';

export const WEBHOOK_TEST_PATH = '/v1/webhooks/test';

export interface WebhooksRoutesOptions {
  /** Undefined when RELAY_WEBHOOK_URL is not set. */
  sink: WebhookSink | undefined;
  authenticate: RequestHandler;
  /** Test events accepted per minute by this instance: each one is a request to every receiver. */
  testsPerMinute?: number;
}

/** `POST /v1/webhooks/test`: queues a signed `webhook.test` to check a receiver's set-up. */
export function webhooksRoutes(options: WebhooksRoutesOptions): Router {
  const router = Router();
  const perMinute = options.testsPerMinute ?? 10;
  let windowStart = 0;
  let inWindow = 0;
  router.post(WEBHOOK_TEST_PATH, options.authenticate, async (_req, res) => {
    if (!options.sink) {
      throw new RelayError(
        'webhooks_not_configured',
        'No webhook is configured on this relay: set RELAY_WEBHOOK_URL and RELAY_WEBHOOK_SECRET.',
      );
    }
    const now = Date.now();
    if (now - windowStart >= 60_000) {
      windowStart = now;
      inWindow = 0;
    }
    if (inWindow >= perMinute) {
      const retryAfter = Math.max(1, Math.ceil((windowStart + 60_000 - now) / 1000));
      throw new RelayError(
        'too_many_webhook_tests',
        `At most ${perMinute} test events a minute; try again in ${retryAfter} s.`,
        { headers: { 'Retry-After': String(retryAfter) } },
      );
    }
    inWindow += 1;
    const id = await options.sink.sendTest(principalOf(res).id);
    res.status(202).json({ id, type: 'webhook.test' });
  });
  return router;
}
