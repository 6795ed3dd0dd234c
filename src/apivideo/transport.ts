import { setTimeout as sleep } from 'node:timers/promises';
import { request, type Dispatcher } from 'undici';
import {
  ApiVideoError,
  ApiVideoHttpError,
  ApiVideoKeyRejectedError,
  ApiVideoNetworkError,
  ApiVideoProxyError,
  isRetryableNetworkCode,
  networkCauseCode,
  proxyRefusalStatus,
} from './errors';
import { backoffDelay, isRetryableStatus, serverRetryDelay, type RetryPolicy } from './retry';

export type RetryReason = 'rate_limited' | 'server_error' | 'timeout' | 'network' | 'auth_renewed';

export interface RetryEvent {
  operation: string;
  attempt: number;
  reason: RetryReason;
  delayMs: number;
  status?: number;
}

export interface Credentials {
  header(signal?: AbortSignal): Promise<string>;
  /** After a 401 for this header: true when a fresh credential is worth one more try. */
  refused(header: string): boolean;
}

export interface CallSpec {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  json?: unknown;
  headers?: Record<string, string>;
  multipart?: { contentType: string; contentLength: number; body(): Iterable<Buffer> };
  /** A body read once as it arrives (no retry can re-send it); chunked when its length is unknown. */
  stream?: { contentType: string; contentLength?: number; body: AsyncIterable<Buffer> };
  credentials?: Credentials;
  signal?: AbortSignal;
  /** Overrides the policy's attempts (a health probe wants one). */
  maxAttempts?: number;
  /** Called before each wait, for logs, metrics and per-upload counts. */
  onRetry?: (event: RetryEvent) => void;
  /** Called after each request sent, with the status answered (undefined: no answer). */
  onAttempt?: (status: number | undefined) => void;
}

export interface TransportOptions {
  baseUrl: string;
  dispatcher: Dispatcher;
  retry: RetryPolicy;
  userAgent: string;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

/** One upstream call with retries, backoff, auth renewal and cancellation. */
export class Transport {
  constructor(private readonly options: TransportOptions) {}

  async call<T>(operation: string, spec: CallSpec): Promise<T> {
    const retry = {
      ...this.options.retry,
      maxAttempts: spec.maxAttempts ?? this.options.retry.maxAttempts,
    };
    let renewed = false;
    for (let attempt = 1; ; attempt++) {
      spec.signal?.throwIfAborted();
      let answer: Answer;
      let header: string | undefined;
      try {
        header = await spec.credentials?.header(spec.signal);
        answer = await this.send(spec, header);
      } catch (err) {
        spec.signal?.throwIfAborted();
        // Already classified (a token call made for these credentials): as it is.
        if (err instanceof ApiVideoError) throw err;
        const proxyStatus = proxyRefusalStatus(err);
        if (proxyStatus !== undefined) {
          // A proxy's 407/403 is configuration, not luck: only its 5xx is worth another try.
          if (proxyStatus < 500 || attempt >= retry.maxAttempts)
            throw new ApiVideoProxyError(operation, proxyStatus, err);
        } else if (!isRetryableNetworkCode(networkCauseCode(err))) {
          throw err;
        } else if (attempt >= retry.maxAttempts) {
          throw new ApiVideoNetworkError(operation, networkCauseCode(err), err);
        }
        const reason = networkCauseCode(err).includes('TIMEOUT') ? 'timeout' : 'network';
        await this.wait(spec, {
          operation,
          attempt,
          reason,
          delayMs: backoffDelay(retry, attempt),
        });
        continue;
      }
      if (answer.status < 300) return answer.body as T;
      const canResend = !spec.stream; // a stream's bytes are gone once sent
      if (
        answer.status === 401 &&
        header &&
        !renewed &&
        canResend &&
        spec.credentials?.refused(header)
      ) {
        renewed = true;
        attempt -= 1; // a renewed token is not a failed attempt
        spec.onRetry?.({ operation, attempt, reason: 'auth_renewed', delayMs: 0, status: 401 });
        continue;
      }
      if (answer.status === 401 || answer.status === 403) {
        throw new ApiVideoKeyRejectedError(answer.status, operation);
      }
      const asked = serverRetryDelay(answer.headers);
      const giveUp = attempt >= retry.maxAttempts || (asked ?? 0) > retry.maxServerDelayMs;
      if (!isRetryableStatus(answer.status) || giveUp) throw httpError(operation, answer);
      const delayMs = asked ?? backoffDelay(retry, attempt);
      const reason =
        answer.status === 429 ? 'rate_limited' : answer.status === 408 ? 'timeout' : 'server_error';
      await this.wait(spec, { operation, attempt, reason, delayMs, status: answer.status });
    }
  }

  private async send(spec: CallSpec, authorization: string | undefined): Promise<Answer> {
    const headers: Record<string, string> = {
      accept: 'application/json',
      'user-agent': this.options.userAgent,
      'av-origin-client': this.options.userAgent,
    };
    Object.assign(headers, spec.headers);
    if (authorization) headers.authorization = authorization;
    let body: string | Iterable<Buffer> | AsyncIterable<Buffer> | undefined;
    if (spec.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(spec.json);
    } else if (spec.multipart) {
      headers['content-type'] = spec.multipart.contentType;
      headers['content-length'] = String(spec.multipart.contentLength);
      body = spec.multipart.body();
    } else if (spec.stream) {
      headers['content-type'] = spec.stream.contentType;
      if (spec.stream.contentLength !== undefined)
        headers['content-length'] = String(spec.stream.contentLength);
      body = spec.stream.body;
    }
    let res: Dispatcher.ResponseData;
    try {
      res = await request(this.options.baseUrl + spec.path, {
        method: spec.method,
        headers,
        // undici writes any iterable chunk by chunk (lib/core/request.js); its types lag behind.
        body: body as string | undefined,
        signal: spec.signal,
        dispatcher: this.options.dispatcher,
      });
    } catch (err) {
      spec.onAttempt?.(undefined);
      throw err;
    }
    spec.onAttempt?.(res.statusCode);
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, body: parseJson(text) };
  }

  private async wait(spec: CallSpec, event: RetryEvent): Promise<void> {
    spec.onRetry?.(event);
    // Node's timer rejects with a generic AbortError; the caller wants its own reason back.
    await sleep(event.delayMs, undefined, { signal: spec.signal }).catch((err: unknown) => {
      throw spec.signal?.aborted ? spec.signal.reason : err;
    });
  }
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function httpError(operation: string, answer: Answer): ApiVideoHttpError {
  const problem = (typeof answer.body === 'object' && answer.body) || {};
  const { type, title } = problem as { type?: unknown; title?: unknown };
  return new ApiVideoHttpError(
    answer.status,
    typeof type === 'string' ? type : undefined,
    typeof title === 'string' ? title : `HTTP ${answer.status}`,
    operation,
  );
}
