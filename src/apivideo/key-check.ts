import type { Logger } from 'pino';
import type { ApiVideoClient } from './client';
import { ApiVideoKeyRejectedError } from './errors';

/**
 * Readiness means "api.video accepted our key recently". It is checked in the background on a
 * timer, so a probe every second costs api.video nothing.
 */
export class KeyCheck {
  private lastAccepted = 0;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly client: ApiVideoClient,
    private readonly logger: Logger,
    private readonly intervalMs = 30_000,
  ) {}

  start(): Promise<void> {
    this.timer = setInterval(() => void this.check(), this.intervalMs).unref();
    return this.check();
  }

  check(): Promise<void> {
    this.running ??= this.probe().finally(() => (this.running = undefined));
    return this.running;
  }

  isReady(): boolean {
    return Date.now() - this.lastAccepted < this.intervalMs * 2.5;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async probe(): Promise<void> {
    try {
      await this.client.checkKey({ maxAttempts: 1, signal: AbortSignal.timeout(10_000) });
      this.lastAccepted = Date.now();
    } catch (err) {
      this.lastAccepted = 0;
      if (err instanceof ApiVideoKeyRejectedError) {
        this.logger.error(
          { event: 'upstream_key_rejected' },
          'api.video rejected APIVIDEO_API_KEY: no upload can succeed until it is fixed',
        );
      } else {
        this.logger.warn(
          { event: 'upstream_check_failed', err: (err as Error).message },
          'could not reach api.video',
        );
      }
    }
  }
}
