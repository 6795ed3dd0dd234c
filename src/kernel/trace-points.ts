/**
 * The relay's own trace points: the steps no instrumentation sees (one part sent to api.video,
 * with its attempts; which upload a request belongs to). This module imports nothing of
 * OpenTelemetry: without OTEL_EXPORTER_OTLP_ENDPOINT no implementation is installed, each trace
 * point is one check of an undefined variable, and no OpenTelemetry module is ever required.
 * With it, src/tracing/sdk.ts installs one built on `@opentelemetry/api`.
 */

/** What a part's call lets its span follow: each attempt and each retry (src/apivideo/client.ts). */
export interface PartCallHooks {
  onRetry?(event: { attempt: number; reason: string; delayMs: number; status?: number }): void;
  onAttempt?(status: number | undefined): void;
}

/** Which upload a request belongs to (src/engine/contract.ts's identity, as much as a span needs). */
export interface UploadNames {
  uploadId: string;
  route: string;
}

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
  part<T, O extends PartCallHooks>(
    info: PartInfo,
    options: O,
    send: (options: O) => Promise<T>,
  ): Promise<T>;
  /** Names the upload (and its video, once known) on the request's server span. */
  upload(identity: UploadNames, videoId: string | undefined): void;
  /** Tells the server span of the request that ended an upload how it ended (an outcome sink). */
  outcomes: { record(outcome: unknown): Promise<void> };
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
export function traceUpload(identity: UploadNames, videoId: string | undefined): void {
  installed?.upload(identity, videoId);
}
