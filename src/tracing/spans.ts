/**
 * The relay's own trace points: the steps no instrumentation sees (one part sent to api.video,
 * with its attempts; which upload a request belongs to). This module imports nothing of
 * OpenTelemetry: without OTEL_EXPORTER_OTLP_ENDPOINT no implementation is installed, each trace
 * point is one check of an undefined variable, and no OpenTelemetry module is ever required.
 * With it, src/tracing/sdk.ts installs one built on `@opentelemetry/api`.
 */
import type { CallOptions } from '../apivideo/client';
import type { UploadIdentity } from '../upload/contract';
import type { OutcomeSink } from '../upload/outcome';

export interface PartInfo {
  videoId: string;
  number: number;
  last: boolean;
  /** File bytes in the part; a function when they are known only once it is sent (a stream). */
  size: number | (() => number);
}

export interface Tracing {
  /**
   * Runs `send` (one part's call, its retries included) inside a span of its own, so that each
   * HTTP attempt is its child; `send` gets options that also tell the span of every attempt.
   */
  part<T>(
    info: PartInfo,
    options: CallOptions,
    send: (options: CallOptions) => Promise<T>,
  ): Promise<T>;
  /** Names the upload (and its video, once known) on the request's server span. */
  upload(identity: Pick<UploadIdentity, 'uploadId' | 'route'>, videoId: string | undefined): void;
  /** Tells the server span of the request that ended an upload how it ended. */
  outcomes: OutcomeSink;
}

let installed: Tracing | undefined;

/** Called once, by src/tracing/sdk.ts, before anything else runs. */
export function installTracing(tracing: Tracing): void {
  installed = tracing;
}

/** The installed tracing, or undefined when traces are off (then callers do what they always did). */
export function tracing(): Tracing | undefined {
  return installed;
}

/** Names the upload on the current request's span; nothing when traces are off. */
export function traceUpload(
  identity: Pick<UploadIdentity, 'uploadId' | 'route'>,
  videoId: string | undefined,
): void {
  installed?.upload(identity, videoId);
}
