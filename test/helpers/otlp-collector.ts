import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import protobuf from 'protobufjs';

/** One span as an OTLP exporter sent it, whichever encoding it used. */
export interface CollectedSpan {
  traceId: string;
  spanId: string;
  /** Undefined for a span whose parent is not in this process (a root, or the client's). */
  parentSpanId: string | undefined;
  name: string;
  kind: 'internal' | 'server' | 'client' | 'producer' | 'consumer' | 'unspecified';
  /** The instrumentation scope: `@opentelemetry/instrumentation-http`, the relay's own, … */
  scope: string;
  attributes: Record<string, unknown>;
  events: Array<{ name: string; attributes: Record<string, unknown> }>;
  status: { code: number; message?: string };
  resource: Record<string, unknown>;
}

export interface Collector {
  /** Give the relay this as OTEL_EXPORTER_OTLP_ENDPOINT. */
  url: string;
  spans: CollectedSpan[];
  /** Every body exported, as text (protobuf bodies as latin1): to look for what must not be there. */
  bodies: string[];
  contentTypes: Set<string>;
  /**
   * Resolves with what `find` returns once it returns something, looked at whenever an export
   * arrives; fails after `timeoutMs` telling what had arrived.
   */
  waitFor<T>(
    find: (spans: CollectedSpan[]) => T | undefined | false,
    timeoutMs?: number,
  ): Promise<T>;
  close(): Promise<void>;
}

const KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'] as const;

/**
 * An OTLP/HTTP trace receiver on loopback (`POST /v1/traces`), decoding `http/json` and
 * `http/protobuf` (with OTLP's own message definitions, below) into one span shape.
 */
export async function startCollector(): Promise<Collector> {
  const spans: CollectedSpan[] = [];
  const bodies: string[] = [];
  const contentTypes = new Set<string>();
  const waiters = new Set<() => void>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
      contentTypes.add(type);
      bodies.push(body.toString('latin1'));
      const json = type === 'application/json';
      try {
        const request = json
          ? (JSON.parse(body.toString('utf8')) as unknown)
          : decodeProtobuf(body);
        spans.push(...flatten(request));
      } catch (err) {
        res.writeHead(400).end(String(err));
        return;
      }
      res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' });
      res.end(json ? '{}' : Buffer.alloc(0));
      for (const wake of waiters) wake();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    bodies,
    contentTypes,
    waitFor: <T>(find: (spans: CollectedSpan[]) => T | undefined | false, timeoutMs = 20_000) =>
      new Promise<T>((resolve, reject) => {
        const check = () => {
          const found = find(spans);
          if (found === undefined || found === false) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found);
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `the spans looked for never came; got:\n${spans.map((s) => `  ${s.traceId} ${s.kind} ${s.name} ${JSON.stringify(s.attributes)}`).join('\n')}`,
            ),
          );
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The spans of one trace, and whether each one's parent is among them or is `clientSpanId`. */
export function traceOf(spans: CollectedSpan[], traceId: string) {
  const mine = spans.filter((s) => s.traceId === traceId);
  const ids = new Set(mine.map((s) => s.spanId));
  return {
    spans: mine,
    /** Spans whose parent never arrived (empty once the whole tree has). */
    orphans: (clientSpanIds: string[]) =>
      mine.filter(
        (s) =>
          !s.parentSpanId || !(ids.has(s.parentSpanId) || clientSpanIds.includes(s.parentSpanId)),
      ),
    childrenOf: (span: CollectedSpan) => mine.filter((s) => s.parentSpanId === span.spanId),
    /** Whether `span` descends from `ancestor`. */
    under: (span: CollectedSpan, ancestor: CollectedSpan): boolean => {
      const byId = new Map(mine.map((s) => [s.spanId, s]));
      for (let at: CollectedSpan | undefined = span; at; at = byId.get(at.parentSpanId ?? '')) {
        if (at.parentSpanId === ancestor.spanId) return true;
      }
      return false;
    },
  };
}

/** The JSON shape (hex ids, camelCase) that both encodings are brought to before flattening. */
interface OtlpRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: KeyValue[] };
    scopeSpans?: Array<{
      scope?: { name?: string };
      spans?: Array<{
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind?: number;
        attributes?: KeyValue[];
        events?: Array<{ name: string; attributes?: KeyValue[] }>;
        status?: { code?: number; message?: string };
      }>;
    }>;
  }>;
}
interface KeyValue {
  key: string;
  value?: Record<string, unknown>;
}

function flatten(request: unknown): CollectedSpan[] {
  const out: CollectedSpan[] = [];
  for (const rs of (request as OtlpRequest).resourceSpans ?? []) {
    const resource = attributesOf(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId || undefined,
          name: s.name,
          kind: KINDS[s.kind ?? 0] ?? 'unspecified',
          scope: ss.scope?.name ?? '',
          attributes: attributesOf(s.attributes),
          events: (s.events ?? []).map((e) => ({
            name: e.name,
            attributes: attributesOf(e.attributes),
          })),
          status: { code: s.status?.code ?? 0, message: s.status?.message || undefined },
          resource,
        });
      }
    }
  }
  return out;
}

function attributesOf(list: KeyValue[] | undefined): Record<string, unknown> {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, valueOf(kv.value)]));
}

function valueOf(value: Record<string, unknown> | undefined): unknown {
  if (!value) return undefined;
  if ('stringValue' in value) return value.stringValue;
  if ('boolValue' in value) return value.boolValue;
  // int64: a string in OTLP/JSON, a number once decoded from protobuf here.
  if ('intValue' in value) return Number(value.intValue);
  if ('doubleValue' in value) return Number(value.doubleValue);
  if ('arrayValue' in value)
    return ((value.arrayValue as { values?: Array<Record<string, unknown>> }).values ?? []).map(
      valueOf,
    );
  return undefined;
}

/** OTLP's trace messages (opentelemetry-proto, trace/v1 and common/v1): the fields read here. */
const OTLP_PROTO = `
syntax = "proto3";
package otlp;
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
message Resource { repeated KeyValue attributes = 1; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }
message InstrumentationScope { string name = 1; string version = 2; }
message Span {
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4;
  string name = 5; int32 kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9; repeated Event events = 11; Status status = 15;
}
message Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; }
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue {
  oneof value {
    string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4;
    ArrayValue array_value = 5; KeyValueList kvlist_value = 6; bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
`;

const ExportTraceServiceRequest = protobuf
  .parse(OTLP_PROTO)
  .root.lookupType('otlp.ExportTraceServiceRequest');

function decodeProtobuf(body: Buffer): OtlpRequest {
  const message = ExportTraceServiceRequest.decode(body);
  const object = ExportTraceServiceRequest.toObject(message, {
    longs: Number,
    bytes: String, // base64, made hex below
    oneofs: false,
    defaults: false,
  }) as OtlpRequest;
  const hex = (b64: string | undefined) =>
    b64 ? Buffer.from(b64, 'base64').toString('hex') : undefined;
  for (const rs of object.resourceSpans ?? [])
    for (const ss of rs.scopeSpans ?? [])
      for (const s of ss.spans ?? []) {
        s.traceId = hex(s.traceId)!;
        s.spanId = hex(s.spanId)!;
        s.parentSpanId = hex(s.parentSpanId);
      }
  return object;
}
