/**
 * Start-up: the one place that reads the environment and handles signals. Everything it builds is
 * passed down explicitly.
 */
import { randomBytes } from 'node:crypto';
import { ApiVideoClient } from './apivideo/client';
import { KeyCheck } from './apivideo/key-check';
import { createApp } from './app';
import { ConfigError, loadConfig, type Config } from './config';
import { startEmulator, type RunningEmulator } from './emulator/app';
import { createLogger, type Logger } from './logger';
import { createHttpServer, listen } from './server';

function readConfig(): Config {
  try {
    return loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(1);
    }
    throw err;
  }
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
  const logger = createLogger({ level: config.logLevel, secrets: [config.apivideo.apiKey] });
  const { apiKey, baseUrl, emulator } = await upstream(config, logger);
  const apivideo = new ApiVideoClient({
    apiKey,
    baseUrl,
    authScheme: config.apivideo.authScheme,
    maxAttempts: config.apivideo.maxAttempts,
  });
  const keyCheck = new KeyCheck(apivideo, logger);
  void keyCheck.start();
  const app = createApp({ config, logger, apivideo, readiness: keyCheck });
  const server = createHttpServer(app, config);
  const url = await listen(server, config.port, config.host);
  logger.info(
    { url, partSize: config.upload.partSize, partConcurrency: config.upload.partConcurrency },
    `relay listening on ${url}`,
  );

  const shutdown = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    keyCheck.stop();
    server.close(() => {
      void Promise.all([apivideo.close(), emulator?.close()]).finally(() => {
        logger.flush();
        process.exit(0);
      });
    });
    server.closeIdleConnections();
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  console.error(`relay failed to start: ${(err as Error).message}`);
  process.exit(1);
});
