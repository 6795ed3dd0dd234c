/**
 * Every metric the dashboard (deploy/grafana) and the alert rules (deploy/prometheus) name is one a
 * real relay exports: a relay on the emulator does what fills its labelled series (uploads through
 * POST /v1/videos and tus, a retry, a failed upload, an interrupted tus request, webhook events
 * delivered, retried and dropped), then its /metrics is scraped once.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import request from 'supertest';
import { parse } from 'yaml';
import { loadConfig } from '../../src/kernel/config';
import type { RunningEmulator } from '../../src/emulator/app';
import { createLogger } from '../../src/kernel/logger';
import { RelayMetrics } from '../../src/kernel/metrics';
import { createWebhooks, type Webhooks } from '../../src/webhooks';
import type { AttemptEvent } from '../../src/webhooks/worker';
import { MiB, randomBytesOf } from '../helpers/data';
import { startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { TOKEN_A, auth, createUpload, patch } from '../helpers/resumable';
import { tusUpload } from '../helpers/tus';
import { uploadMultipart } from '../helpers/upload';
import { WebhookReceiver } from '../helpers/webhook-receiver';
import { metricNames, sampleNames, variableQueryMetricNames } from '../monitoring/promql';

/* eslint-disable @typescript-eslint/no-explicit-any -- dashboard and rules are untyped documents */
const ROOT = join(__dirname, '../..');
const SECRET = `whsec_${randomBytes(32).toString('base64')}`;

/** Each metric name a query of the dashboard or an alert expression uses, with where. */
function namedMetrics(): Map<string, string[]> {
  const uses = new Map<string, string[]>();
  const add = (where: string, names: string[]) => {
    for (const name of names) uses.set(name, [...(uses.get(name) ?? []), where]);
  };
  const dashboard = JSON.parse(
    readFileSync(join(ROOT, 'deploy/grafana/relay-dashboard.json'), 'utf8'),
  );
  const panels = dashboard.panels.flatMap((p: any) => [p, ...(p.panels ?? [])]);
  for (const panel of panels)
    for (const target of panel.targets ?? [])
      add(`dashboard panel "${panel.title}"`, metricNames(target.expr));
  for (const v of dashboard.templating.list.filter((v: any) => v.type === 'query'))
    add(`dashboard variable ${v.name}`, variableQueryMetricNames(v.query.query ?? v.query));
  const rules = parse(readFileSync(join(ROOT, 'deploy/prometheus/relay-alerts.yml'), 'utf8'));
  for (const group of rules.groups)
    for (const rule of group.rules) add(`alert ${rule.alert}`, metricNames(rule.expr));
  return uses;
}

/** Resolves with the first attempt (past or future) that matches. */
function attemptMatching(
  attempts: AttemptEvent[],
  worker: Webhooks['worker'],
  match: (a: AttemptEvent) => boolean,
): Promise<AttemptEvent> {
  const past = attempts.find(match);
  if (past) return Promise.resolve(past);
  return new Promise((resolve) => {
    const listener = (a: AttemptEvent) => {
      if (!match(a)) return;
      worker.off('attempt', listener);
      resolve(a);
    };
    worker.on('attempt', listener);
  });
}

let emulator: RunningEmulator;
beforeAll(async () => {
  emulator = await startTestEmulator();
});
afterAll(async () => {
  await emulator.close();
});

test('every metric the dashboard and the alerts name is in the scrape of a relay that has worked', async () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    // Endpoint 0 fails once then takes the event; endpoint 1 says it is gone (410).
    const receiving = await WebhookReceiver.start(SECRET);
    cleanups.push(() => receiving.close());
    receiving.answer(500);
    const gone = await WebhookReceiver.start(SECRET);
    cleanups.push(() => gone.close());
    gone.answerAlways(410);
    const metrics = new RelayMetrics();
    const webhooks = createWebhooks({
      settings: loadConfig({
        NODE_ENV: 'test',
        RELAY_WEBHOOK_URL: `${receiving.url},${gone.url}`,
        RELAY_WEBHOOK_SECRET: SECRET,
      }).webhooks,
      logger: createLogger({
        level: 'fatal',
        destination: new Writable({ write: (_c, _e, done) => done() }),
      }),
      registry: metrics.registry,
      // Retries 20 ms apart: the test waits on the attempts, not on the schedule.
      retrySchedule: [20, 20, 20],
      pollMs: 50,
    })!;
    const attempts: AttemptEvent[] = [];
    webhooks.worker.on('attempt', (a: AttemptEvent) => attempts.push(a));
    webhooks.worker.start();
    cleanups.push(() => webhooks.worker.flush(0).finally(() => webhooks.store.close()));
    const relay: TestRelay = await startTestRelay(emulator, {
      env: { RELAY_API_TOKENS: TOKEN_A, LOG_LEVEL: 'warn' },
      outcomeSinks: [webhooks.sink],
      deps: { metrics, webhookSink: webhooks.sink },
    });
    cleanups.push(() => relay.close());

    // POST /v1/videos: one upload retried once then completed, one failed by api.video.
    emulator.faults.add({ target: 'part', part: 1, status: 503 });
    expect((await uploadMultipart(relay.url, 256 * 1024, { headers: auth(TOKEN_A) })).status).toBe(
      201,
    );
    emulator.faults.add({ target: 'part', part: 1, status: 400, times: 5 });
    expect((await uploadMultipart(relay.url, 1000, { headers: auth(TOKEN_A) })).body).toMatchObject(
      { code: 'upstream_failed' },
    );
    emulator.faults.clear();
    // tus: one upload completed, one request interrupted (api.video failing its part).
    await tusUpload(`${relay.url}/v1/uploads`, randomBytesOf(MiB), { headers: auth(TOKEN_A) });
    emulator.faults.add({ target: 'part', status: 500, times: 100 });
    const path = await createUpload(relay.url, 10);
    expect((await patch(relay.url, path, 0, randomBytesOf(10))).status).toBe(502);
    emulator.faults.clear();
    // Webhook events of those uploads: delivered after a failed attempt, and dropped by a 410.
    await attemptMatching(attempts, webhooks.worker, (a) => a.outcome === 'retry');
    await attemptMatching(attempts, webhooks.worker, (a) => a.outcome === 'delivered');
    await attemptMatching(attempts, webhooks.worker, (a) => a.outcome === 'endpoint_gone');

    const scrape = await request(relay.url).get('/metrics');
    expect(scrape.status).toBe(200);
    const samples = sampleNames(scrape.text);
    const uses = namedMetrics();
    expect(uses.size).toBeGreaterThan(20);
    const missing = [...uses].filter(([name]) => !samples.has(name));
    expect(missing).toEqual([]);
    // The labelled series the panels group by are there too, not only their HELP lines.
    for (const series of [
      /^relay_uploads_failed_total\{route="videos",code="upstream_failed"\} 1$/m,
      /^relay_upload_interruptions_total\{route="resumable",code="upstream_failed"\} 1$/m,
      /^relay_upstream_retries_total\{reason="server_error"\} [1-9]/m,
      /^relay_webhook_failed_attempts_total\{[^}]*reason="http_5xx"[^}]*\} 1$/m,
      /^relay_webhook_dropped_total\{[^}]*reason="endpoint_gone"[^}]*\} [1-9]/m,
      /^relay_webhook_deliveries_total\{[^}]*\} [1-9]/m,
    ])
      expect(scrape.text).toMatch(series);
  } finally {
    while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
  }
});
