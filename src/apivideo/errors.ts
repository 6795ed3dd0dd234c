/** Errors of the api.video client, each with a stable code callers can switch on. */
export type ApiVideoErrorCode =
  | 'http_error'
  | 'network_error'
  | 'key_rejected'
  | 'tls_error'
  | 'timeout'
  | 'proxy_error'
  | 'invalid_video_id';

export abstract class ApiVideoError extends Error {
  abstract readonly code: ApiVideoErrorCode;
}

/** api.video answered with a problem (after any retries). */
export class ApiVideoHttpError extends ApiVideoError {
  readonly code = 'http_error';
  constructor(
    readonly status: number,
    readonly problemType: string | undefined,
    readonly problemTitle: string,
    readonly operation: string,
  ) {
    super(`${operation}: api.video answered ${status}: ${problemTitle}`);
    this.name = 'ApiVideoHttpError';
  }
}

/** api.video does not accept the key (401/403, or a 400 from /auth/api-key). */
export class ApiVideoKeyRejectedError extends ApiVideoError {
  readonly code = 'key_rejected';
  constructor(
    readonly status: number,
    readonly operation: string,
  ) {
    super(`${operation}: api.video rejected the API key (${status})`);
    this.name = 'ApiVideoKeyRejectedError';
  }
}

/** No answer: the connection failed, was reset, or timed out (after any retries). */
export class ApiVideoNetworkError extends ApiVideoError {
  readonly code: 'network_error' | 'tls_error' | 'timeout';
  constructor(
    readonly operation: string,
    readonly causeCode: string,
    cause: unknown,
  ) {
    super(`${operation}: api.video could not be reached (${causeCode})`, { cause });
    this.name = 'ApiVideoNetworkError';
    this.code = isTlsCode(causeCode)
      ? 'tls_error'
      : ANSWER_TIMEOUT_CODES.has(causeCode)
        ? 'timeout'
        : 'network_error';
  }
}

/** The outbound proxy (HTTP(S)_PROXY) answered the CONNECT with something other than 200. */
export class ApiVideoProxyError extends ApiVideoError {
  readonly code = 'proxy_error';
  constructor(
    readonly operation: string,
    readonly status: number,
    cause: unknown,
  ) {
    super(`${operation}: the outbound proxy answered ${status}`, { cause });
    this.name = 'ApiVideoProxyError';
  }
}

/** A video id that is not shaped like api.video's: never put into an upstream URL. */
export class ApiVideoInvalidIdError extends ApiVideoError {
  readonly code = 'invalid_video_id';
  constructor(readonly operation: string) {
    super(`${operation}: refused to call api.video with a malformed video id`);
    this.name = 'ApiVideoInvalidIdError';
  }
}

/**
 * Failures worth another try, as undici's RetryHandler lists them (its default `errorCodes`), plus
 * the timeouts and closed sockets of our own dispatcher and name resolution hiccups. Anything not
 * here and not TLS is not a network failure: it is answered as it is, never retried blindly.
 */
export const RETRYABLE_NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ENOTFOUND',
  'ENETDOWN',
  'ENETUNREACH',
  'EHOSTDOWN',
  'EHOSTUNREACH',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ETIMEDOUT',
  'ECONNABORTED',
  'EAI_AGAIN',
]);

/** api.video took the connection but did not answer (or finish answering) in time. */
const ANSWER_TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** A network failure by the allow-list (TLS failures included: they are reported as such). */
export function isRetryableNetworkCode(code: string): boolean {
  return RETRYABLE_NETWORK_CODES.has(code) || isTlsCode(code);
}

/**
 * The status a proxy refused the CONNECT with: undici says so only in its message
 * (lib/dispatcher/proxy-agent.js), as a RequestAbortedError or, without tunnelling, an
 * InvalidArgumentError.
 */
export function proxyRefusalStatus(err: unknown): number | undefined {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  if (code !== 'UND_ERR_ABORTED' && code !== 'UND_ERR_INVALID_ARG') return undefined;
  const match =
    /^Proxy (?:response \((\d{3})\) !== 200 when HTTP Tunneling|Authentication Required \((407)\))$/.exec(
      String(message),
    );
  return match ? Number(match[1] ?? match[2]) : undefined;
}

const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_UNTRUSTED',
]);

function isTlsCode(code: string): boolean {
  return TLS_CODES.has(code) || code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS');
}

/** The most specific code found along an error's cause chain (undici wraps socket errors). */
export function networkCauseCode(err: unknown): string {
  let best = 'UNKNOWN';
  for (
    let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0;
    e && depth < 5;
    depth++
  ) {
    if (typeof e.code === 'string') {
      best = e.code;
      if (isTlsCode(e.code) || e.code.startsWith('E')) return e.code;
    }
    e = e.cause as typeof e;
  }
  return best;
}
