import { backoffDelay, isRetryableStatus, serverRetryDelay } from '../../src/apivideo/retry';

const policy = { maxAttempts: 5, baseDelayMs: 100, maxDelayMs: 1000, maxServerDelayMs: 60_000 };

test.each([
  [408, true],
  [429, true],
  [500, true],
  [502, true],
  [503, true],
  [400, false],
  [401, false],
  [403, false],
  [404, false],
  [409, false],
])('status %i retryable: %s', (status, retryable) => {
  expect(isRetryableStatus(status)).toBe(retryable);
});

test('full jitter: uniform up to base·2^(n-1), capped', () => {
  expect([1, 2, 3, 4, 5, 9].map((n) => backoffDelay(policy, n, () => 1))).toEqual([
    100, 200, 400, 800, 1000, 1000,
  ]);
  expect(backoffDelay(policy, 3, () => 0)).toBe(0);
  expect(backoffDelay(policy, 3, () => 0.5)).toBe(200);
});

test.each([
  [{ 'retry-after': '2' }, 2000],
  [{ 'retry-after': '0.5' }, 500],
  [{ 'x-ratelimit-retry-after': '3' }, 3000],
  [{ 'retry-after': 'Wed, 25 Nov 2026 12:00:10 GMT' }, 10_000],
  [{ 'retry-after': 'soon' }, undefined],
  [{}, undefined],
])('server asks %j → %p ms', (headers, ms) => {
  expect(serverRetryDelay(headers, Date.parse('Wed, 25 Nov 2026 12:00:00 GMT'))).toBe(ms);
});
