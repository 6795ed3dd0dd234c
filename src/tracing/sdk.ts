/**
 * OpenTelemetry, when traces are on: required by src/tracing.ts only, before anything that the
 * instrumentations patch (express, http, ioredis, pino) is required, so they see every one of
 * them. The SDK reads its standard OTEL_* settings itself (endpoint, protocol, sampler, batch
 * processor, service name, resource). The relay adds what no instrumentation sees (src/tracing/
 * spans.ts) and keeps credentials out of every span.
 */
import {
  SpanKind,
  SpanStatusCode,
  context,
  trace,
  type Attributes,
  type Span,
} from '@opentelemetry/api';
import { getRPCMetadata } from '@opentelemetry/core';
import { ExpressInstrumentation, ExpressLayerType } from '@opentelemetry/instrumentation-express';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { PinoInstrumentation } from '@opentelemetry/instrumentation-pino';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { NodeSDK } from '@opentelemetry/sdk-node';
import type { UploadOutcome } from '../engine/outcome';
import {
  installTracing,
  type PartCallHooks,
  type PartInfo,
  type Tracing,
} from '../kernel/trace-points';

/** What OTEL_SERVICE_NAME defaults to here (the SDK's own default is `unknown_service:node`). */
export const DEFAULT_SERVICE_NAME = 'apivideo-upload-relay';

/** Requests that are not uploads and come every few seconds: a trace each would drown the rest. */
const PROBES = new Set(['/healthz', '/readyz', '/metrics']);

export interface RunningTracing {
  /** Sends the spans still queued, then stops. */
  shutdown(): Promise<void>;
}

export function startTracing(env: Record<string, string | undefined>): RunningTracing {
  const named =
    !!env.OTEL_SERVICE_NAME?.trim() ||
    /(^|,)\s*service\.name\s*=/.test(env.OTEL_RESOURCE_ATTRIBUTES ?? '');
  const sdk = new NodeSDK({
    ...(named ? {} : { serviceName: DEFAULT_SERVICE_NAME }),
    instrumentations: [
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (req) => PROBES.has((req.url ?? '').split('?')[0]!),
        // Replaces url.path and url.query before the span has them: `POST /upload?token=to_…`
        // carries an upload token, and a client can put one anywhere in a URL.
        startIncomingSpanHook: (req) => scrubbedUrl(req.url ?? '/'),
        requireParentforOutgoingSpans: true,
      }),
      // Middleware and routers would add a dozen empty spans to every request; route handlers
      // (auth, admission, the upload itself) stay, and http.route still names the server span.
      new ExpressInstrumentation({
        ignoreLayersType: [ExpressLayerType.MIDDLEWARE, ExpressLayerType.ROUTER],
      }),
      // Through diagnostics_channel: it sees the relay's own undici Agent (src/apivideo/dispatcher.ts)
      // like any other. Calls outside a request (the key check, webhook deliveries) are not traced.
      new UndiciInstrumentation({
        requireParentforSpans: true,
        startSpanHook: (request) => {
          if (!request.path.includes('?')) return {};
          const path = scrubbedUrl(request.path);
          return {
            'url.full': `${request.origin}${path['url.path']}?${path['url.query']}`,
            'url.query': `?${path['url.query']}`,
          };
        },
      }),
      // Only commands made inside a traced request: the health probe's PING every second is not.
      new IORedisInstrumentation({
        requireParentSpan: true,
        dbStatementSerializer: commandAndKeys,
      }),
      // trace_id and span_id on every log line written inside a span; the lines still go to stdout
      // only (the relay's logs are its own, not the OpenTelemetry logs SDK's).
      new PinoInstrumentation({ disableLogSending: true }),
    ],
    // Traces only: metrics stay on /metrics (prom-client), logs on stdout.
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  installTracing(relayTracing());
  return { shutdown: () => sdk.shutdown() };
}

function relayTracing(): Tracing {
  const tracer = trace.getTracer(DEFAULT_SERVICE_NAME);
  return {
    part<T, O extends PartCallHooks>(info: PartInfo, options: O, send: (options: O) => Promise<T>) {
      return tracer.startActiveSpan(
        'apivideo.upload_part',
        {
          kind: SpanKind.INTERNAL,
          attributes: {
            'apivideo.video_id': info.videoId,
            'relay.part.number': info.number,
            'relay.part.last': info.last,
          },
        },
        async (span) => {
          let attempts = 0;
          let status: number | undefined;
          try {
            // The caller's own options, with the span listening in on attempts and retries.
            const listened: O = {
              ...options,
              onRetry: (event: Parameters<NonNullable<PartCallHooks['onRetry']>>[0]) => {
                span.addEvent('retry', {
                  'relay.retry.attempt': event.attempt,
                  'relay.retry.reason': event.reason,
                  'relay.retry.delay_ms': event.delayMs,
                  ...(event.status !== undefined
                    ? { 'http.response.status_code': event.status }
                    : {}),
                });
                options.onRetry?.(event);
              },
              onAttempt: (answered: number | undefined) => {
                attempts += 1;
                status = answered;
                options.onAttempt?.(answered);
              },
            };
            const answer = await send(listened);
            span.setAttribute('relay.part.outcome', 'acknowledged');
            return answer;
          } catch (err) {
            const type = errorType(err);
            span.setAttributes({ 'relay.part.outcome': 'failed', 'error.type': type });
            span.setStatus({ code: SpanStatusCode.ERROR, message: type });
            throw err;
          } finally {
            span.setAttributes({
              'relay.part.size': typeof info.size === 'function' ? info.size() : info.size,
              'relay.part.attempts': attempts,
              ...(status !== undefined ? { 'relay.part.status_code': status } : {}),
            });
            span.end();
          }
        },
      );
    },
    upload(identity, videoId) {
      requestSpan()?.setAttributes({
        'relay.upload_id': identity.uploadId,
        'relay.route': identity.route,
        ...(videoId ? { 'apivideo.video_id': videoId } : {}),
      });
    },
    outcomes: {
      record: async (outcome: UploadOutcome) => {
        requestSpan()?.setAttributes(outcomeAttributes(outcome));
      },
    },
  };
}

/**
 * The server span of the request being handled (an upload's attributes belong there, where a
 * trace is searched), or the active span outside one; undefined in background work.
 */
function requestSpan(): Span | undefined {
  const active = context.active();
  return getRPCMetadata(active)?.span ?? trace.getSpan(active);
}

function outcomeAttributes(outcome: UploadOutcome): Attributes {
  return {
    'relay.upload_id': outcome.uploadId,
    'relay.route': outcome.route,
    ...(outcome.videoId ? { 'apivideo.video_id': outcome.videoId } : {}),
    'relay.upload.outcome': outcome.kind === 'completed' ? 'completed' : outcome.code,
    'relay.upload.bytes': outcome.bytesAcknowledged,
    'relay.upload.parts': outcome.parts,
    'relay.upload.retries': outcome.retries,
  };
}

/** error.type as OpenTelemetry has it: the status answered, the network error's code, or a name. */
function errorType(err: unknown): string {
  const e = (err ?? {}) as {
    status?: unknown;
    causeCode?: unknown;
    code?: unknown;
    name?: unknown;
  };
  if (typeof e.status === 'number') return String(e.status);
  if (typeof e.causeCode === 'string') return e.causeCode;
  if (typeof e.code === 'string') return e.code;
  return typeof e.name === 'string' ? e.name : 'error';
}

let loggable: ((url: string) => string) | undefined;

/**
 * A URL's path and query as the relay's log lines show them (src/kernel/loggable.ts): upload tokens
 * and credential-named parameters redacted, whatever their spelling. Required at the first
 * request, not here: loggable.ts requires pino, which must be required after the instrumentations.
 */
function scrubbedUrl(url: string): { 'url.path': string; 'url.query'?: string } {
  loggable ??= // eslint-disable-next-line @typescript-eslint/no-require-imports -- see above
    (require('../kernel/loggable') as typeof import('../kernel/loggable')).loggableUrl;
  const safe = loggable(url);
  const q = safe.indexOf('?');
  return q < 0
    ? { 'url.path': safe }
    : { 'url.path': safe.slice(0, q), 'url.query': safe.slice(q + 1) };
}

/**
 * A Redis command as a span shows it: its name and keys, never a value (a session record, a tail
 * of file bytes, an outbox entry). EVAL/EVALSHA list their keys after the script and a count.
 */
export function commandAndKeys(command: string, args: unknown[]): string {
  const name = command.toUpperCase();
  if (/^EVAL(SHA)?(_RO)?$/.test(name)) {
    const count = Number(args[1]);
    const keys = Number.isSafeInteger(count) && count > 0 ? args.slice(2, 2 + count) : [];
    return [name, ...keys.map(String)].join(' ');
  }
  if (args.length === 0) return name;
  const key = typeof args[0] === 'string' ? args[0] : '?';
  return args.length > 1 ? `${name} ${key} [${args.length - 1} more]` : `${name} ${key}`;
}
