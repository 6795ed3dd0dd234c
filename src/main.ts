/**
 * Start-up: the one place that reads the environment and handles signals. Everything it builds is
 * passed down explicitly.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ApiVideoClient } from './apivideo/client';
import { upstreamDispatcher } from './apivideo/dispatcher';
import { KeyCheck } from './apivideo/key-check';
import { createApp } from './app';
import { ConfigError, formatBytes, hasClientAuth, loadConfig, type Config } from './config';
import { startEmulator, type RunningEmulator } from './emulator/app';
import { RelayError } from './errors';
import { Lifecycle } from './lifecycle';
import { createLogger, type Logger } from './logger';
import { createHttpServer, listen } from './server';
import { Redis } from 'ioredis';
import { RedisSessionStore } from './resumable/session-store';
import { RedisLocker } from './resumable/upload-lock';
import { detectSystemMemory } from './system-memory';

function fail(message: string): never {
  console.error(message);
  process.exit(1);
}

function readConfig(): Config {
  try {
    return loadConfig(process.env, detectSystemMemory());
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
}

/** APIVIDEO_CA_FILE, plus NODE_EXTRA_CA_CERTS (a CA list passed to TLS replaces Node's own). */
function extraCa(config: Config): string[] | undefined {
  if (!config.network.caFile) return undefined;
  const files = [config.network.caFile, process.env.NODE_EXTRA_CA_CERTS].filter(
    (f): f is string => !!f,
  );
  return files.map((file) => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      fail(
        `Invalid configuration:\n  - APIVIDEO_CA_FILE: cannot read "${file}" (${(err as NodeJS.ErrnoException).code})`,
      );
    }
  });
}

/** Every configured credential, so the logger can scrub it wherever it turns up. */
function secretsOf(config: Config): Array<string | undefined> {
  const proxyPasswords = [config.network.httpProxy, config.network.httpsProxy].map((url) => {
    try {
      return url ? decodeURIComponent(new URL(url).password) || undefined : undefined;
    } catch {
      return undefined;
    }
  });
  return [
    config.apivideo.apiKey,
    ...config.auth.apiTokens,
    config.auth.jwtSecret,
    config.auth.metricsToken,
    ...proxyPasswords,
  ];
}

/** Sessions and locks of resumable uploads: shared in Redis, or in this process only. */
function resumableStorage(config: Config, logger: Logger) {
  const url = config.resumable.redisUrl;
  if (!url) {
    logger.info('REDIS_URL is not set: resumable uploads live in this process only (one instance)');
    return undefined;
  }
  // Fail fast while Redis is away (503 session_store_unavailable), rather than queue commands.
  const redis = new Redis(url, {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    enableAutoPipelining: true,
  });
  redis.on('error', (err) => logger.warn({ err: err.message }, 'Redis connection trouble'));
  const prefix = config.resumable.redisKeyPrefix;
  return {
    sessions: new RedisSessionStore(redis, prefix),
    locker: new RedisLocker(redis, prefix),
  };
}

/** Without a key outside production, uploads go to an in-process emulator: the relay runs out of the box. */
async function upstream(
  config: Config,
  logger: Logger,
): Promise<{ apiKey: string; baseUrl: string; emulator?: RunningEmulator }> {
  if (!config.useEmbeddedEmulator)
    return { apiKey: config.apivideo.apiKey!, baseUrl: config.apivideo.baseUrl };
  const apiKey = randomBytes(16).toString('hex');
  const emulator = await startEmulator({ apiKey, host: '127.0.0.1', port: 0 });
  logger.warn(
    { emulator: emulator.url },
    `APIVIDEO_API_KEY is not set: uploads go to the built-in api.video emulator at ${emulator.url}, not to api.video`,
  );
  return { apiKey, baseUrl: emulator.url, emulator };
}

async function main(): Promise<void> {
  const config = readConfig();
  const logger = createLogger({ level: config.logLevel, secrets: secretsOf(config) });
  const { apiKey, baseUrl, emulator } = await upstream(config, logger);
  const apivideo = new ApiVideoClient({
    apiKey,
    baseUrl,
    authScheme: config.apivideo.authScheme,
    maxAttempts: config.apivideo.maxAttempts,
    dispatcher: upstreamDispatcher({ ...config.network, extraCa: extraCa(config) }),
  });
  const keyCheck = new KeyCheck(apivideo, logger);
  void keyCheck.start();
  const lifecycle = new Lifecycle();
  const resumable = resumableStorage(config, logger);
  const app = createApp({ config, logger, apivideo, readiness: keyCheck, lifecycle, resumable });
  const sweeper = setInterval(
    () => {
      void (app.locals.resumable as { sweepExpired(): Promise<number> })
        .sweepExpired()
        .catch((err: unknown) => {
          logger.warn({ err: String(err) }, 'could not sweep expired resumable uploads');
        });
    },
    Math.min(60_000, config.resumable.sessionTtlMs),
  ).unref();
  const server = createHttpServer(app, config);
  const url = await listen(server, config.port, config.host);
  const { partSize, partConcurrency, memoryBudget, memoryBudgetFrom } = config.upload;
  logger.info(
    {
      url,
      partSize,
      partConcurrency,
      maxConcurrentUploads: config.limits.maxConcurrentUploads,
      memoryBudgetBytes: memoryBudget,
      memoryBudgetFrom,
    },
    `relay listening on ${url}; uploads hold at most ${formatBytes(memoryBudget)} of file bytes together (UPLOAD_MEMORY_BUDGET: ${memoryBudgetFrom}), in parts of 5 MiB growing to ${formatBytes(partSize)}`,
  );
  if (!hasClientAuth(config.auth))
    logger.warn(
      'no client authentication is configured: anyone who can reach the relay can upload',
    );

  const shutdown = async (signal: string) => {
    logger.info(
      { signal, uploadsInProgress: lifecycle.inProgress, graceMs: config.shutdownGraceMs },
      'draining: new uploads are refused, uploads in progress may finish',
    );
    const outcome = await lifecycle.drain(
      config.shutdownGraceMs,
      () =>
        new RelayError(
          'shutting_down',
          'The relay shut down before this upload finished; retry on another instance.',
          { headers: { 'Retry-After': '5' } },
        ),
    );
    logger.info({ outcome }, 'drained; closing');
    keyCheck.stop();
    clearInterval(sweeper);
    server.close();
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), 1000).unref();
    await Promise.allSettled([apivideo.close(), emulator?.close(), resumable?.sessions.close()]);
    logger.flush();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err: unknown) => fail(`relay failed to start: ${(err as Error).message}`));
