import { randomBytes } from 'node:crypto';
import { ConfigError, isWebhookSecret, loadConfig } from '../../src/kernel/config';
import { DEFAULT_RETRY_SCHEDULE, parseRetryAfter } from '../../src/webhooks/worker';
import { WEBHOOK_EVENT_TYPES } from '../../src/kernel/webhook-event-types';

const KEY = { APIVIDEO_API_KEY: 'k-123456' };
const SECRET = `whsec_${randomBytes(32).toString('base64')}`;

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig({ ...KEY, ...env });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

test('off by default; every upload event when on', () => {
  expect(loadConfig(KEY).webhooks).toEqual({
    urls: [],
    secret: undefined,
    events: ['upload.completed', 'upload.failed', 'upload.expired'],
    timeoutMs: 10_000,
  });
  const on = loadConfig({
    ...KEY,
    RELAY_WEBHOOK_URL: 'https://a.example/hooks, http://b.internal:8080/x',
    RELAY_WEBHOOK_SECRET: SECRET,
    RELAY_WEBHOOK_EVENTS: 'upload.completed,upload.completed',
    RELAY_WEBHOOK_TIMEOUT_MS: '2500',
  }).webhooks;
  expect(on).toEqual({
    urls: ['https://a.example/hooks', 'http://b.internal:8080/x'],
    secret: SECRET,
    events: ['upload.completed'],
    timeoutMs: 2500,
  });
});

test('every problem at once, and no URL or secret echoed back', () => {
  const badSecret = 'whsec_c2hvcnQ='; // 5 bytes
  const problems = problemsOf({
    RELAY_WEBHOOK_URL: 'https://ok.example/x,ftp://user:pa55word@files.example/,not a url',
    RELAY_WEBHOOK_SECRET: badSecret,
    RELAY_WEBHOOK_EVENTS: 'upload.completed,video.deleted',
    RELAY_WEBHOOK_TIMEOUT_MS: '0',
  });
  expect(problems).toEqual([
    'RELAY_WEBHOOK_URL: URL number 2 is not an http(s) URL',
    'RELAY_WEBHOOK_URL: URL number 3 is not an http(s) URL',
    expect.stringMatching(/^RELAY_WEBHOOK_SECRET: expected whsec_/),
    expect.stringMatching(/^RELAY_WEBHOOK_EVENTS: unknown event "video.deleted"; known: /),
    expect.stringMatching(/^RELAY_WEBHOOK_TIMEOUT_MS: /),
  ]);
  const text = problems.join('\n');
  expect(text).not.toContain('pa55word');
  expect(text).not.toContain('c2hvcnQ');
});

test('a URL needs a secret; at most 10 URLs', () => {
  expect(problemsOf({ RELAY_WEBHOOK_URL: 'https://a.example/x' })).toEqual([
    'RELAY_WEBHOOK_SECRET: required when RELAY_WEBHOOK_URL is set',
  ]);
  const eleven = Array.from({ length: 11 }, (_, i) => `https://h${i}.example/`).join(',');
  expect(problemsOf({ RELAY_WEBHOOK_URL: eleven, RELAY_WEBHOOK_SECRET: SECRET })).toEqual([
    'RELAY_WEBHOOK_URL: at most 10 URLs, got 11',
  ]);
});

test.each([
  [SECRET, true],
  [`whsec_${randomBytes(24).toString('base64')}`, true],
  [`whsec_${randomBytes(64).toString('base64')}`, true],
  [`whsec_${randomBytes(23).toString('base64')}`, false],
  [`whsec_${randomBytes(65).toString('base64')}`, false],
  [randomBytes(32).toString('base64'), false], // no prefix
  [`whsec_${randomBytes(32).toString('base64url')}_`, false], // not base64
  [`whsec_${randomBytes(32).toString('base64')} `, false],
])('isWebhookSecret(%s) is %s', (secret, ok) => {
  expect(isWebhookSecret(secret)).toBe(ok);
});

test('the event names are the public ones', () => {
  expect(WEBHOOK_EVENT_TYPES).toEqual([
    'upload.completed',
    'upload.failed',
    'upload.expired',
    'webhook.test',
  ]);
});

test('the default schedule retries for more than 24 h, as Standard Webhooks recommends', () => {
  const total = DEFAULT_RETRY_SCHEDULE.reduce((a, b) => a + b, 0);
  expect(total).toBeGreaterThan(24 * 3600_000);
  expect(DEFAULT_RETRY_SCHEDULE[0]).toBe(5000);
  expect(DEFAULT_RETRY_SCHEDULE).toHaveLength(7); // 8 attempts in all
});

test('Retry-After in seconds or as an HTTP date', () => {
  expect(parseRetryAfter('120')).toBe(120_000);
  expect(parseRetryAfter(undefined)).toBeUndefined();
  expect(parseRetryAfter('soon')).toBeUndefined();
  const inAMinute = new Date(Date.now() + 60_000).toUTCString();
  expect(parseRetryAfter(inAMinute)).toBeGreaterThan(55_000);
  expect(parseRetryAfter(inAMinute)).toBeLessThanOrEqual(60_000);
});
