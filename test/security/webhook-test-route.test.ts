/**
 * Issue #24, the webhook test route: `POST /v1/webhooks/test` sends a signed event to the
 * operator's backend, yet any JWT end user could call it, and its one rate limit for the whole
 * instance let one caller's 10 calls block everyone for a minute. It is now for the operator's
 * backend: static tokens, or JWTs carrying the `webhooks:test` scope; the limit is per principal.
 */
import { createHash } from 'node:crypto';
import { SignJWT } from 'jose';
import request from 'supertest';
import type { RunningEmulator } from '../../src/emulator/app';
import type { WebhookSink } from '../../src/webhooks/sink';
import { startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';

const BACKEND_A = 'webhook-backend-a-0123456789';
const BACKEND_B = 'webhook-backend-b-0123456789';
const JWT_SECRET = 'webhook-test-jwt-secret-of-32-characters!';
const principalOf = (token: string) =>
  `token:${createHash('sha256').update(token).digest('hex').slice(0, 12)}`;

/** Records who asked for a test event, in place of the outbox. */
function recordingSink(): { sink: WebhookSink; sent: string[] } {
  const sent: string[] = [];
  const sink = {
    sendTest: async (principal: string) => {
      sent.push(principal);
      return `msg_${String(sent.length).padStart(22, '0')}`;
    },
  } as unknown as WebhookSink;
  return { sink, sent };
}

let emulator: RunningEmulator;
const relays: TestRelay[] = [];
beforeAll(async () => {
  emulator = await startTestEmulator();
});
afterAll(async () => {
  for (const r of relays) await r.close();
  await emulator.close();
});

async function relayWith(env: Record<string, string>, sink: WebhookSink): Promise<TestRelay> {
  const relay = await startTestRelay(emulator, {
    env: { LOG_LEVEL: 'warn', ...env },
    deps: { webhookSink: sink },
  });
  relays.push(relay);
  return relay;
}

function jwt(sub: string, claims: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setExpirationTime('5m')
    .sign(new TextEncoder().encode(JWT_SECRET));
}

const sendTest = (relay: TestRelay, bearer?: string) => {
  const req = request(relay.url).post('/v1/webhooks/test');
  return bearer ? req.set('Authorization', `Bearer ${bearer}`) : req;
};

test('an end user’s JWT without the webhooks:test scope is refused 403; with it, or a static token, the event goes', async () => {
  const { sink, sent } = recordingSink();
  const relay = await relayWith(
    { RELAY_API_TOKENS: BACKEND_A, RELAY_JWT_SECRET: JWT_SECRET },
    sink,
  );
  // [who, bearer, status]
  const rows: Array<[string, string, number]> = [
    ['a JWT with no scope', await jwt('user-1'), 403],
    ['a JWT with other scopes', await jwt('user-2', { scope: 'uploads webhooks:read' }), 403],
    [
      'a JWT whose scope only contains the name',
      await jwt('user-3', { scope: 'webhooks:tests' }),
      403,
    ],
    [
      'a JWT with the scope among others',
      await jwt('ops-1', { scope: 'uploads webhooks:test' }),
      202,
    ],
    ['a JWT with the scope as a list', await jwt('ops-2', { scope: ['webhooks:test'] }), 202],
    ['a static token', BACKEND_A, 202],
  ];
  for (const [who, bearer, status] of rows) {
    const res = await sendTest(relay, bearer);
    expect({ who, status: res.status }).toEqual({ who, status });
    if (status === 403) {
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.body).toMatchObject({
        code: 'insufficient_scope',
        requestId: res.headers['x-request-id'],
      });
      expect(res.headers['www-authenticate']).toMatch(/error="insufficient_scope".*webhooks:test/);
    }
  }
  expect(sent).toEqual(['jwt:ops-1', 'jwt:ops-2', principalOf(BACKEND_A)]);
});

test('a relay without client auth sends test events for nobody: its callers are anonymous', async () => {
  const { sink, sent } = recordingSink();
  const relay = await relayWith({}, sink);
  const res = await sendTest(relay);
  expect(res.status).toBe(403);
  expect(res.body).toMatchObject({ code: 'insufficient_scope' });
  expect(sent).toEqual([]);
});

test('the limit is per principal: one backend’s 10 calls in a minute do not block another’s', async () => {
  const { sink, sent } = recordingSink();
  const relay = await relayWith({ RELAY_API_TOKENS: `${BACKEND_A},${BACKEND_B}` }, sink);
  const statuses: number[] = [];
  for (let i = 0; i < 11; i++) statuses.push((await sendTest(relay, BACKEND_A)).status);
  expect(statuses).toEqual([...Array(10).fill(202), 429]);
  const other = await sendTest(relay, BACKEND_B);
  expect(other.status).toBe(202);
  const again = await sendTest(relay, BACKEND_A);
  expect(again.status).toBe(429);
  expect(again.body).toMatchObject({ code: 'too_many_webhook_tests' });
  expect(Number(again.headers['retry-after'])).toBeGreaterThan(0);
  expect(sent.filter((p) => p === principalOf(BACKEND_B))).toHaveLength(1);
});
