/**
 * Start-up: the one place that reads the environment and handles signals. Everything it builds is
 * passed down explicitly.
 */
// First: on a Node.js too old for the rest, say so plainly.
import './kernel/node-version';
// Then traces, when configured: before anything they instrument is required (see tracing.ts).
import { flushTraces } from './tracing';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ApiVideoClient } from './apivideo/client';
import { upstreamDispatcher } from './apivideo/dispatcher';
import { KeyCheck } from './apivideo/key-check';
import {
  ConfigError,
  hasClientAuth,
  loadConfig,
  readSecretFiles,
  type Config,
} from './kernel/config';
import { startEmulator, type RunningEmulator } from './emulator/app';
import { RelayError } from './kernel/errors';
import { DotEnvError, dotEnvAdditions, readBeforeStart } from './kernel/dotenv';
import { createLogger, prettyLogsWanted, type Logger } from './kernel/logger';
import { createHttpServer, listen, openableUrl } from './http/server';
import { describeSessionStore } from './stores/redis';
import { createRelay } from './relay';
import { detectSystemMemory } from './kernel/system-memory';
import { formatBytes, UPLOAD_OVERHEAD_BYTES } from './kernel/sizes';

function fail(message: string): never {
  console.error(message);
  process.exit(1);
}

/**
 * `.env` in the working directory, when there is one; real environment variables win. Returns the
 * names it set that only count before Node starts (MALLOC_…, NODE_OPTIONS): warned about once the
 * logger exists.
 */
function loadDotEnv(): string[] {
  const path = resolve('.env');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    fail(`Cannot read ${path}: ${(err as NodeJS.ErrnoException).code}`);
  }
  try {
    const additions = dotEnvAdditions(text, process.env, path);
    Object.assign(process.env, additions);
    return readBeforeStart(Object.keys(additions));
  } catch (err) {
    if (err instanceof DotEnvError) fail(err.message);
    throw err;
  }
}

/** The configuration, and the `.env` names that came too late to count (see loadDotEnv). */
function readConfig(): { config: Config; tooLateFromDotEnv: string[] } {
  const tooLateFromDotEnv = loadDotEnv();
  try {
    const { env, problems } = readSecretFiles(process.env, (path) => readFileSync(path, 'utf8'));
    return { config: loadConfig(env, problems, detectSystemMemory()), tooLateFromDotEnv };
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
  const urls = [config.network.httpProxy, config.network.httpsProxy, ...config.webhooks.urls];
  const proxyPasswords = urls.map((url) => {
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
    config.webhooks.secret,
    ...proxyPasswords,
    redisPassword(config.resumable.redisUrl),
  ];
}

function redisPassword(url: string | undefined): string | undefined {
  try {
    return url ? decodeURIComponent(new URL(url).password) || undefined : undefined;
  } catch {
    return undefined;
  }
}

/** REDIS_CA_FILE's PEM, read here because main.ts is the one place that reads files. */
function redisCa(config: Config): string | undefined {
  const file = config.resumable.redisCaFile;
  if (!file) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    fail(
      `Invalid configuration:\n  - REDIS_CA_FILE: cannot read "${file}" (${(err as NodeJS.ErrnoException).code})`,
    );
  }
}

/** The start-up line's word on traces; never a credential the endpoint's URL may carry. */
function describeTracing(endpoint: string | undefined): string {
  if (!endpoint) return 'off (OTEL_EXPORTER_OTLP_ENDPOINT turns them on)';
  const url = new URL(endpoint);
  return `OpenTelemetry, sent to ${url.protocol}//${url.host}${url.pathname.replace(/\/$/, '')} (OTEL_* settings: docs/operations.md#traces)`;
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
  const { config, tooLateFromDotEnv } = readConfig();
  const logger = createLogger({
    level: config.logLevel,
    secrets: secretsOf(config),
    pretty: prettyLogsWanted(process.stdout.isTTY, config.nodeEnv),
  });
  if (tooLateFromDotEnv.length > 0)
    logger.warn(
      { event: 'dotenv_too_late', names: tooLateFromDotEnv },
      `${tooLateFromDotEnv.join(', ')} in .env changes nothing: it is read before Node starts, so set it in the environment that starts the relay (the image sets MALLOC_TRIM_THRESHOLD_ itself)`,
    );
  const { apiKey, baseUrl, emulator } = await upstream(config, logger);
  // One dispatcher for api.video and webhooks alike: the same proxy and CA settings.
  const dispatcher = upstreamDispatcher({ ...config.network, extraCa: extraCa(config) });
  const apivideo = new ApiVideoClient({
    apiKey,
    baseUrl,
    authScheme: config.apivideo.authScheme,
    maxAttempts: config.apivideo.maxAttempts,
    dispatcher,
  });
  const keyCheck = new KeyCheck(apivideo, logger);
  void keyCheck.start();
  logger.info(`session store: ${describeSessionStore(config.resumable)}`);
  logger.info(`traces: ${describeTracing(config.tracing.endpoint)}`);
  const relay = createRelay({
    config,
    logger,
    apivideo,
    readiness: keyCheck,
    dispatcher,
    redisCa: redisCa(config),
  });
  relay.start();
  const { app, lifecycle } = relay;
  const server = createHttpServer(app, config);
  const url = await listen(server, config.port, config.host);
  const { partSize, partConcurrency, memoryBudget, memoryBudgetFrom } = config.upload;
  const { maxConcurrentUploads } = config.limits;
  // The budget counts each upload's own cost only up to its cap (the budget less two parts).
  const counted = Math.min(maxConcurrentUploads, relay.memoryBudget.uploadsCounted);
  logger.info(
    {
      url,
      partSize,
      partConcurrency,
      maxConcurrentUploads,
      memoryBudgetBytes: memoryBudget,
      memoryBudgetFrom,
      memoryBudgetUploadsCounted: counted,
    },
    `relay listening on ${openableUrl(url)}${openableUrl(url) === url ? '' : ` (every interface: ${url})`}; uploads hold at most ${formatBytes(memoryBudget)} together, file bytes and ${UPLOAD_OVERHEAD_BYTES / 1024} KiB each (${memoryBudgetFrom === 'UPLOAD_MEMORY_BUDGET' ? 'as UPLOAD_MEMORY_BUDGET sets' : `UPLOAD_MEMORY_BUDGET unset: ${memoryBudgetFrom}`}), in parts of 5 MiB growing to ${formatBytes(partSize)}`,
  );
  if (counted < maxConcurrentUploads)
    logger.warn(
      { event: 'memory_budget_small', memoryBudgetUploadsCounted: counted, maxConcurrentUploads },
      `UPLOAD_MEMORY_BUDGET counts the own cost of only ${counted} uploads in progress (it needs ${formatBytes(2 * partSize)} for parts besides them); beyond that, uploads use memory it does not count: raise it, or lower UPLOAD_MAX_CONCURRENT`,
    );
  if (!hasClientAuth(config.auth))
    logger.warn(
      'no client authentication is configured: anyone who can reach the relay can upload',
    );

  const shutdown = async (signal: string) => {
    const drainStarted = Date.now();
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
    // Events of the uploads that just finished go out if they can; the rest wait in the outbox.
    const graceMs = Math.max(1000, config.shutdownGraceMs - (Date.now() - drainStarted));
    const flushed = await relay.close(graceMs);
    if (flushed) logger.info({ ...flushed, graceMs }, 'webhooks flushed');
    keyCheck.stop();
    server.close();
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), 1000).unref();
    await Promise.allSettled([apivideo.close(), emulator?.close(), flushTraces(5000)]);
    logger.flush();
    process.exit(0);
  };
  // A second signal ends the drain's grace at once: what is left is cut, with its offset saved.
  let stopping = false;
  const onSignal = (signal: string) => {
    if (stopping) return lifecycle.endGrace();
    stopping = true;
    void shutdown(signal);
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
}

main().catch((err: unknown) => fail(`relay failed to start: ${(err as Error).message}`));
