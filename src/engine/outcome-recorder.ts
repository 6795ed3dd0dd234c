import type { Logger } from 'pino';
import type { RelayMetrics } from '../kernel/metrics';
import type { UploadObserver } from './contract';
import type { OutcomeSink, UploadOutcome } from './outcome';

/**
 * The built-in consumer of outcomes: the `upload_finished` log line and the outcome counters.
 * Everything in it was acknowledged by api.video or counted by the engine; nothing is inferred.
 */
export class OutcomeRecorder implements OutcomeSink {
  constructor(
    private readonly metrics: RelayMetrics,
    private readonly logger: Logger,
  ) {}

  async record(outcome: UploadOutcome): Promise<void> {
    const { route } = outcome;
    if (outcome.kind === 'completed') this.metrics.uploadsCompleted.inc({ route });
    else this.metrics.uploadsFailed.inc({ route, code: outcome.code });
    const seconds = outcome.durationMs / 1000;
    const line = {
      event: 'upload_finished',
      outcome: outcome.kind === 'completed' ? 'completed' : outcome.code,
      ...(outcome.kind === 'expired' ? { expired: true } : {}),
      route,
      uploadId: outcome.uploadId,
      principal: outcome.principal,
      ...(outcome.uploadTokenId ? { uploadTokenId: outcome.uploadTokenId } : {}),
      videoId: outcome.videoId,
      bytes: outcome.bytesAcknowledged,
      bytesReceived: outcome.bytesReceived,
      parts: outcome.parts,
      retries: outcome.retries,
      durationMs: outcome.durationMs,
      mibPerSecond:
        seconds > 0 ? Number((outcome.bytesAcknowledged / 1024 / 1024 / seconds).toFixed(2)) : 0,
      ...(outcome.kind !== 'completed' ? { containerDeleted: outcome.containerDeleted } : {}),
    };
    if (outcome.kind === 'completed') return void this.logger.info(line, 'upload finished');
    this.logger.warn(line, 'upload failed');
    if (outcome.code === 'client_aborted') {
      this.logger.warn(
        {
          event: 'upload_aborted',
          route,
          uploadId: outcome.uploadId,
          videoId: outcome.videoId,
          bytesReceived: outcome.bytesReceived,
        },
        'upload_aborted',
      );
    }
  }
}

/** The engine's byte counters, as Prometheus metrics. */
export function metricsObserver(metrics: RelayMetrics): UploadObserver {
  return {
    started: (route) => metrics.uploadsStarted.inc({ route }),
    received: (bytes) => metrics.bytesReceived.inc(bytes),
    held: (delta) => metrics.bytesBuffered.inc(delta),
    partAcknowledged: (bytes, seconds) => {
      metrics.bytesRelayed.inc(bytes);
      metrics.partDuration.observe(seconds);
    },
    retried: (reason) => metrics.upstreamRetries.inc({ reason }),
    interrupted: (route, code) => metrics.uploadsInterrupted.inc({ route, code }),
  };
}
