/** When and how long to wait before trying an upstream request again. */
export interface RetryPolicy {
  maxAttempts: number;
  baseDelayMs: number;
  /** Cap of our own backoff. */
  maxDelayMs: number;
  /** The longest wait a server may ask for; past it we give up rather than hold the upload. */
  maxServerDelayMs: number;
}

export const DEFAULT_RETRY: Omit<RetryPolicy, 'maxAttempts'> = {
  baseDelayMs: 250,
  maxDelayMs: 20_000,
  maxServerDelayMs: 60_000,
};

export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** "Full jitter": a uniform wait in [0, min(cap, base·2^(attempt-1))]. */
export function backoffDelay(policy: RetryPolicy, attempt: number, random = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(random() * ceiling);
}

type Headers = Record<string, string | string[] | undefined>;

/**
 * The wait the server asked for, in ms: Retry-After (seconds or an HTTP date) or api.video's
 * X-RateLimit-Retry-After (seconds). Undefined when neither is there or readable.
 */
export function serverRetryDelay(headers: Headers, now = Date.now()): number | undefined {
  const first = (name: string) => {
    const value = headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  for (const name of ['retry-after', 'x-ratelimit-retry-after']) {
    const value = first(name)?.trim();
    if (!value) continue;
    if (/^\d+(\.\d+)?$/.test(value)) return Math.round(Number(value) * 1000);
    const date = Date.parse(value);
    if (!Number.isNaN(date)) return Math.max(0, date - now);
  }
  return undefined;
}
