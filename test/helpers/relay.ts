import { Writable } from 'node:stream';
import type { Server } from 'node:http';
import { ApiVideoClient, type ApiVideoClientOptions } from '../../src/apivideo/client';
import { loadConfig, type Config } from '../../src/kernel/config';
import type { RunningEmulator } from '../../src/emulator/app';
import type { Lifecycle } from '../../src/kernel/lifecycle';
import { createLogger } from '../../src/kernel/logger';
import { createRelay, type Relay, type RelayParts } from '../../src/relay';
import { createHttpServer, listen } from '../../src/http/server';
import { TEST_API_KEY } from './emulator';
import type { MemoryBudget } from '../../src/engine/memory-budget';

export interface TestRelay {
  url: string;
  /** The drain state: tests start a drain with lifecycle.drain(). */
  lifecycle: Lifecycle;
  server: Server;
  config: Config;
  client: ApiVideoClient;
  /** Every part, as the composition root built it. */
  relay: Relay;
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
  outcomeSinks?: RelayParts['outcomeSinks'];
  uploadTokens?: RelayParts['uploadTokens'];
  /** Overrides for the relay's api.video client (timeouts, a dispatcher through a proxy). */
  client?: Partial<ApiVideoClientOptions>;
  /** Parts built by the test instead of from the configuration (webhooks, metrics, the budget). */
  deps?: Partial<Omit<RelayParts, 'config' | 'logger' | 'apivideo' | 'readiness'>>;
  /** Runs the background work main.ts runs (the Redis probe, webhook delivery, the sweep timer). */
  start?: boolean;
}

/**
 * The real relay, built by the same composition root as main.ts (so every setting, REDIS_* ones
 * included, applies as in production), on an ephemeral port, pointed at an emulator, with short
 * retry waits and its logs kept in memory so tests can read them.
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
  const relay = createRelay({
    config,
    logger,
    apivideo: client,
    readiness: { isReady: () => options.ready ?? true },
    ...options.deps,
    outcomeSinks: [...(options.outcomeSinks ?? []), ...(options.deps?.outcomeSinks ?? [])],
    uploadTokens: options.uploadTokens ?? options.deps?.uploadTokens,
  });
  if (options.start) relay.start();
  const { app, lifecycle } = relay;
  const server = createHttpServer(app, config);
  const url = await listen(server, 0, '127.0.0.1');
  return {
    url,
    lifecycle,
    server,
    config,
    client,
    relay,
    memoryBudget: relay.memoryBudget,
    sweepExpired: () => relay.sweep(),
    rawLogs: () => lines,
    logs: () =>
      lines
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await relay.close();
      await client.close();
    },
  };
}
