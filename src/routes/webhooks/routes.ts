import { Router, type RequestHandler } from 'express';
import { RelayError } from '../../kernel/errors';
import { hasScope, principalOf } from '../../http/client-auth';
import type { WebhookSink } from '../../webhooks/sink';

export const WEBHOOK_TEST_PATH = '/v1/webhooks/test';
/** What a JWT's `scope` claim must hold to send test events (static tokens need nothing). */
export const WEBHOOK_TEST_SCOPE = 'webhooks:test';

export interface WebhooksRoutesOptions {
  /** Undefined when RELAY_WEBHOOK_URL is not set. */
  sink: WebhookSink | undefined;
  authenticate: RequestHandler;
  /** Test events accepted per minute from one principal: each one is a request to every receiver. */
  testsPerMinute?: number;
}

const WINDOW_MS = 60_000;
/** Past this many callers in the map, windows that are over are dropped on the next call. */
const PRUNE_ABOVE = 1_000;

/**
 * `POST /v1/webhooks/test`: queues a signed `webhook.test` to check a receiver's set-up. The
 * receiver is the operator's backend, so the caller must be too: a static token, or a JWT with the
 * `webhooks:test` scope. Each principal has its own limit, so one caller cannot use up another's.
 */
export function webhooksRoutes(options: WebhooksRoutesOptions): Router {
  const router = Router();
  const perMinute = options.testsPerMinute ?? 10;
  const windows = new Map<string, { start: number; count: number }>();
  router.post(WEBHOOK_TEST_PATH, options.authenticate, async (_req, res) => {
    const principal = principalOf(res);
    if (!hasScope(principal, WEBHOOK_TEST_SCOPE)) {
      throw new RelayError(
        'insufficient_scope',
        principal.kind === 'jwt'
          ? `Test events are for the operator's backend: a JWT needs "${WEBHOOK_TEST_SCOPE}" in its scope claim.`
          : "Test events are for the operator's backend: call with a token from RELAY_API_TOKENS.",
        {
          headers: {
            'WWW-Authenticate': `Bearer realm="upload-relay", error="insufficient_scope", scope="${WEBHOOK_TEST_SCOPE}"`,
          },
        },
      );
    }
    if (!options.sink) {
      throw new RelayError(
        'webhooks_not_configured',
        'No webhook is configured on this relay: set RELAY_WEBHOOK_URL and RELAY_WEBHOOK_SECRET.',
      );
    }
    const now = Date.now();
    if (windows.size > PRUNE_ABOVE)
      for (const [id, w] of windows) if (now - w.start >= WINDOW_MS) windows.delete(id);
    let window = windows.get(principal.id);
    if (!window || now - window.start >= WINDOW_MS) {
      window = { start: now, count: 0 };
      windows.set(principal.id, window);
    }
    if (window.count >= perMinute) {
      const retryAfter = Math.max(1, Math.ceil((window.start + WINDOW_MS - now) / 1000));
      throw new RelayError(
        'too_many_webhook_tests',
        `At most ${perMinute} test events a minute from one caller; try again in ${retryAfter} s.`,
        { headers: { 'Retry-After': String(retryAfter) } },
      );
    }
    window.count += 1;
    const id = await options.sink.sendTest(principal.id);
    res.status(202).json({ id, type: 'webhook.test' });
  });
  return router;
}
