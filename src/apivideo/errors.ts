/** Errors of the api.video client, each with a stable code callers can switch on. */
export type ApiVideoErrorCode = 'http_error' | 'network_error' | 'key_rejected' | 'tls_error';

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
  readonly code: 'network_error' | 'tls_error';
  constructor(
    readonly operation: string,
    readonly causeCode: string,
    cause: unknown,
  ) {
    super(`${operation}: api.video could not be reached (${causeCode})`, { cause });
    this.name = 'ApiVideoNetworkError';
    this.code = isTlsCode(causeCode) ? 'tls_error' : 'network_error';
  }
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
