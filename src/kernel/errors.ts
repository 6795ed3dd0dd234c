import { formatBytes } from './sizes';

/**
 * Every error the relay answers with. The `code` is public: clients and dashboards match on it,
 * so a code is never renamed or reused. docs/errors.md is generated from this table by a test
 * that fails when the two disagree.
 */
export const ERROR_TABLE = {
  route_not_found: { status: 404, title: 'No such route' },
  video_not_found: { status: 404, title: 'No such video' },
  invalid_request: { status: 400, title: 'Invalid request' },
  invalid_field: { status: 400, title: 'Invalid field value' },
  invalid_video_id: { status: 400, title: 'Not a video id' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  unauthorized: { status: 401, title: 'Missing or invalid credentials' },
  forbidden: { status: 403, title: 'Not yours' },
  too_many_uploads: { status: 503, title: 'Too many uploads in progress' },
  too_many_uploads_per_client: {
    status: 429,
    title: 'Too many uploads in progress for this client',
  },
  shutting_down: { status: 503, title: 'The relay is shutting down' },
  relay_busy: { status: 503, title: 'Other uploads hold the relay’s memory' },
  too_many_fields: { status: 400, title: 'Too many form fields' },
  field_too_large: { status: 400, title: 'A form field is too large' },
  file_missing: { status: 400, title: 'No file in the form' },
  too_many_files: { status: 400, title: 'More than one file in the form' },
  field_after_file: { status: 400, title: 'Form field after the file' },
  malformed_multipart: { status: 400, title: 'Malformed multipart body' },
  empty_file: { status: 400, title: 'The file is empty' },
  file_too_large: { status: 413, title: 'The file is too large' },
  upload_idle_timeout: { status: 408, title: 'The client stopped sending' },
  upload_timeout: { status: 408, title: 'The upload took too long' },
  upstream_failed: { status: 502, title: 'api.video refused the upload' },
  upstream_unreachable: { status: 502, title: 'api.video could not be reached' },
  upstream_tls_error: { status: 502, title: 'api.video’s TLS certificate is not trusted' },
  upstream_key_rejected: { status: 502, title: 'api.video rejected the relay’s API key' },
  upload_not_found: { status: 404, title: 'No such resumable upload' },
  upload_expired: { status: 410, title: 'The upload expired' },
  tus_concatenation_unsupported: { status: 400, title: 'tus concatenation is not supported' },
  invalid_tus_header: { status: 400, title: 'Invalid tus header' },
  tus_version_unsupported: { status: 412, title: 'Unsupported tus version' },
  offset_mismatch: { status: 409, title: 'Upload-Offset does not match the upload' },
  upload_length_exceeded: { status: 413, title: 'More bytes than Upload-Length' },
  upload_completed: { status: 409, title: 'The upload is already complete' },
  upload_locked: { status: 423, title: 'Another request is writing to this upload' },
  too_many_sessions: {
    status: 429,
    title: 'Too many unfinished resumable uploads for this client',
  },
  session_store_full: { status: 503, title: 'The session store holds as many bytes as it may' },
  session_store_unavailable: { status: 503, title: 'The session store cannot be reached' },
  upstream_proxy_error: { status: 502, title: 'The outbound proxy refused the connection' },
  upstream_timeout: { status: 504, title: 'api.video did not answer in time' },
  body_too_large: { status: 413, title: 'The request body is too large' },
  headers_too_large: { status: 431, title: 'The request headers are too large' },
  headers_timeout: { status: 408, title: 'The request headers took too long' },
  expectation_failed: { status: 417, title: 'Unsupported expectation' },
  internal_error: { status: 500, title: 'Internal error' },
  webhooks_not_configured: { status: 409, title: 'No webhook is configured' },
  too_many_webhook_tests: { status: 429, title: 'Too many webhook test events' },
  upload_token_unknown: { status: 401, title: 'Unknown upload token' },
  upload_token_expired: { status: 401, title: 'The upload token has expired' },
  upload_token_used_up: { status: 401, title: 'The upload token has no uses left' },
  upload_token_revoked: { status: 401, title: 'The upload token was revoked' },
  upload_token_not_found: { status: 404, title: 'No such upload token' },
  upload_chunk_invalid: { status: 400, title: 'The chunk does not fit the upload' },
  upload_token_video_mismatch: { status: 403, title: 'Not a video of this upload token' },
  insufficient_scope: { status: 403, title: 'The credentials lack a needed scope' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERROR_TABLE;

export interface RelayErrorOptions {
  cause?: unknown;
  headers?: Record<string, string>;
}

export class RelayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly title: string;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, detail: string, options: RelayErrorOptions = {}) {
    super(detail, { cause: options.cause });
    this.name = 'RelayError';
    this.code = code;
    this.status = ERROR_TABLE[code].status;
    this.title = ERROR_TABLE[code].title;
    this.headers = options.headers ?? {};
  }
}

/** The client went away: nobody is left to answer. */
export class ClientGone extends Error {
  readonly code = 'client_aborted';
  constructor() {
    super('the client closed the connection');
    this.name = 'ClientGone';
  }
}

export function isRelayError(err: unknown): err is RelayError {
  return err instanceof RelayError;
}

/** The RFC 9457 body. `type` points at the code's row in the catalogue the relay serves. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  requestId: string;
}

/**
 * Relative (RFC 9457 allows a URI reference): it resolves against the relay that answered, which
 * serves docs/errors.md at GET /docs/errors, so the link works wherever the relay is deployed.
 */
export const PROBLEM_TYPE_BASE = '/docs/errors#';

export function toProblem(err: RelayError, requestId: string): Problem {
  return {
    type: PROBLEM_TYPE_BASE + err.code,
    title: err.title,
    status: err.status,
    detail: err.message,
    code: err.code,
    requestId,
  };
}

/** Redis trouble, as every route answers it: 503 with a retry hint, never the driver's words. */
export function sessionStoreUnavailable(cause?: unknown): RelayError {
  return new RelayError(
    'session_store_unavailable',
    'Resumable uploads and upload tokens are unavailable for a moment: the session store cannot be reached. Retry shortly.',
    { cause, headers: { 'Retry-After': '5' } },
  );
}

/**
 * The same object, whose every method fails fast with `sessionStoreUnavailable` while `ready()`
 * says the store is away, and turns any failure of the store into it.
 */
export function failingFast<T extends object>(store: T, ready: () => boolean): T {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== 'function' || property === 'constructor') return value;
      return async (...args: unknown[]) => {
        if (!ready()) throw sessionStoreUnavailable();
        try {
          return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        } catch (err) {
          if (err instanceof RelayError) throw err;
          throw sessionStoreUnavailable(err);
        }
      };
    },
  });
}

/** Over a size limit: UPLOAD_MAX_FILE_SIZE, an upload token's maxFileSize, a part's 128 MiB. */
export function fileTooLarge(
  limit: number,
  whose: 'relay' | 'token' | 'chunk' = 'relay',
): RelayError {
  const detail = {
    relay: `The file is larger than ${formatBytes(limit)}.`,
    token: `The file is larger than this upload token allows (${formatBytes(limit)}).`,
    chunk: `A chunk is at most ${formatBytes(limit)}.`,
  }[whose];
  return new RelayError('file_too_large', detail);
}
