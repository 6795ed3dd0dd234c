/**
 * main.ts's wiring, in the relay's own process: RELAY_WEBHOOK_* read at start-up, the worker
 * started, `POST /v1/webhooks/test` delivered signed, and the drain flushing the outbox on SIGTERM.
 */
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import { TEST_API_KEY, startTestEmulator } from '../helpers/emulator';
import { startRelayProcess } from '../helpers/process';
import { eventually } from '../helpers/wait';
import { WebhookReceiver } from '../helpers/webhook-receiver';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const TOKEN = 'webhook-process-token-0123456789';

let emulator: RunningEmulator;
let receiver: WebhookReceiver;
beforeAll(async () => {
  emulator = await startTestEmulator();
  receiver = await WebhookReceiver.start(SECRET);
});
afterAll(async () => {
  await receiver.close();
  await emulator.close();
});

async function sendTest(url: string): Promise<string> {
  const res = await request(`${url}/v1/webhooks/test`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  expect(res.statusCode).toBe(202);
  return ((await res.body.json()) as { id: string }).id;
}

test('the test event arrives signed; SIGTERM flushes within the grace period; nothing secret is logged', async () => {
  const relay = await startRelayProcess({
    APIVIDEO_API_KEY: TEST_API_KEY,
    APIVIDEO_BASE_URL: emulator.url,
    RELAY_API_TOKENS: TOKEN,
    RELAY_WEBHOOK_URL: receiver.url,
    RELAY_WEBHOOK_SECRET: SECRET,
    SHUTDOWN_GRACE_MS: '1500',
  });
  try {
    const id = await sendTest(relay.url);
    await receiver.waitFor(1);
    expect(receiver.received[0]).toMatchObject({
      verifyError: undefined,
      payload: { type: 'webhook.test' },
      headers: { 'webhook-id': id },
    });
    await eventually(() => relay.output().includes('"outcome":"delivered"'));
    expect(relay.output()).toContain('webhook events wait in this process memory');

    // One the receiver never answers: the drain gives up on it at the end of the grace period.
    receiver.answer('hang');
    await sendTest(relay.url);
    await receiver.waitFor(2);
    const started = Date.now();
    expect(await relay.stop('SIGTERM')).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(relay.output()).toMatch(/"left":1.*"msg":"webhooks flushed"/);
    const output = relay.output();
    expect(output).not.toContain(SECRET.slice('whsec_'.length));
    expect(output).not.toContain(receiver.url);
    for (const r of receiver.received)
      expect(output).not.toContain(String(r.headers['webhook-signature']).slice(3));
  } finally {
    await relay.stop('SIGKILL');
  }
}, 30_000);
