/**
 * OpenTelemetry traces, decided before anything else is loaded: main.ts imports this module
 * first. Its instrumentations patch express, http, ioredis and pino as they are required, and
 * main.ts's other imports require them at once, before main() could read the configuration; so
 * the decision is made here, from the environment, by the same rule loadConfig applies
 * (tracingEndpoint). This and main.ts are the only modules that read the environment.
 *
 * Without OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) nothing of OpenTelemetry is
 * required: the relay's trace points (src/kernel/trace-points.ts) stay unset, and the byte path is what
 * it is without traces.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { tracingEndpoint } from './kernel/config';
import { dotEnvAdditions } from './kernel/dotenv';
import type { RunningTracing } from './tracing/sdk';

/**
 * OTEL_* settings from `.env` (main.ts reads the rest later): the SDK reads process.env as it
 * starts, which is now. A `.env` that cannot be read or parsed is main.ts's to report.
 */
function otelFromDotEnv(env: Record<string, string | undefined>): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(resolve('.env'), 'utf8');
  } catch {
    return {};
  }
  try {
    const additions = dotEnvAdditions(text, env, '.env');
    return Object.fromEntries(
      Object.entries(additions).filter(([name]) => name.startsWith('OTEL_')),
    );
  } catch {
    return {};
  }
}

Object.assign(process.env, otelFromDotEnv(process.env));

const running: RunningTracing | undefined = tracingEndpoint(process.env)
  ? // eslint-disable-next-line @typescript-eslint/no-require-imports -- required only when wanted
    (require('./tracing/sdk') as typeof import('./tracing/sdk')).startTracing(process.env)
  : undefined;

/** Sends the spans still queued (at most `timeoutMs`); nothing when traces are off. */
export async function flushTraces(timeoutMs: number): Promise<void> {
  if (!running) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    running.shutdown().catch(() => undefined),
    new Promise((r) => (timer = setTimeout(r, timeoutMs))),
  ]);
  clearTimeout(timer);
}
