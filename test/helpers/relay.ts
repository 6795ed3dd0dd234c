import { Writable } from 'node:stream';
import type { Server } from 'node:http';
import { ApiVideoClient, type ApiVideoClientOptions } from '../../src/apivideo/client';
import { createApp, type AppDeps } from '../../src/app';
import { loadConfig, type Config } from '../../src/config';
import type { RunningEmulator } from '../../src/emulator/app';
import { Lifecycle } from '../../src/lifecycle';
import { createLogger } from '../../src/logger';
import { createHttpServer, listen } from '../../src/server';
import { TEST_API_KEY } from './emulator';
import type { MemoryBudget } from '../../src/upload/memory-budget';

export interface TestRelay {
  url: string;
  /** The drain state: tests start a drain with lifecycle.drain(). */
  lifecycle: Lifecycle;
  server: Server;
  config: Config;
  client: ApiVideoClient;
  /** Sweeps expired resumable sessions on demand (main.ts does it on a timer). */
  sweepExpired(): Promise<number>;
  /** UPLOAD_MEMORY_BUDGET's own accounting, shared by every route. */
  memoryBudget: MemoryBudget;
  /** Every log line written so far, parsed. */
  logs(): Array<Record<string, unknown>>;
  rawLogs(): string;
  close(): Promise<void>;
}

export interface TestRelayOptions {
  env?: Record<string, string>;
  ready?: boolean;
  apiKey?: string;
  authScheme?: 'basic' | 'bearer';
  resumable?: AppDeps['resumable'];
  outcomeSinks?: AppDeps['outcomeSinks'];
  uploadTokens?: AppDeps['uploadTokens'];
  /** Overrides for the relay's api.video client (timeouts, a dispatcher through a proxy). */
  client?: Partial<ApiVideoClientOptions>;
  /** More of the app's parts (webhooks, outcome sinks, metrics). */
  deps?: Partial<AppDeps>;
}

/**
 * The real app on an ephemeral port, pointed at an emulator, with short retry waits and its logs
 * kept in memory so tests can read them.
 */
export async function startTestRelay(
  emulator: RunningEmulator,
  options: TestRelayOptions = {},
): Promise<TestRelay> {
  const apiKey = options.apiKey ?? TEST_API_KEY;
  const config = loadConfig({
    NODE_ENV: 'test',
    APIVIDEO_API_KEY: apiKey,
    APIVIDEO_BASE_URL: emulator.url,
    UPLOAD_PART_SIZE: '5MiB',
    LOG_LEVEL: 'debug',
    ...options.env,
  });
  let lines = '';
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines += chunk.toString();
      done();
    },
  });
  const logger = createLogger({ level: config.logLevel, secrets: [apiKey], destination });
  const client = new ApiVideoClient({
    apiKey,
    baseUrl: emulator.url,
    authScheme: options.authScheme ?? config.apivideo.authScheme,
    maxAttempts: config.apivideo.maxAttempts,
    retry: { baseDelayMs: 5, maxDelayMs: 100 },
    ...options.client,
  });
  const lifecycle = new Lifecycle();
  const app = createApp({
    config,
    lifecycle,
    outcomeSinks: options.outcomeSinks,
    uploadTokens: options.uploadTokens,
    logger,
    apivideo: client,
    readiness: { isReady: () => options.ready ?? true },
    resumable: options.resumable,
    ...options.deps,
  });
  const server = createHttpServer(app, config);
  const url = await listen(server, 0, '127.0.0.1');
  return {
    url,
    lifecycle,
    server,
    config,
    client,
    memoryBudget: app.locals.memoryBudget as MemoryBudget,
    sweepExpired: () =>
      (app.locals.resumable as { sweepExpired(): Promise<number> }).sweepExpired(),
    rawLogs: () => lines,
    logs: () =>
      lines
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await client.close();
    },
  };
}
