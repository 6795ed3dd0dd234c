import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { ApiVideoClient } from '../apivideo/client';
import type { RetryEvent } from '../apivideo/transport';
import type { Video } from '../apivideo/types';
import { formatBytes } from '../config';
import { RelayError, isRelayError } from '../errors';
import { abortable } from './abortable';
import { openContainer } from './container';
import { IdleTimer } from './idle-timer';
import { PartCutter, type Cutter, type Part } from './part-cutter';
import { PooledPartCutter } from './pooled-part-cutter';
import { PartQueue } from './part-queue';
import { toRelayError } from './upstream-failure';
import type { UploadTarget } from './video-fields';

export interface RelaySettings {
  partSize: number;
  partConcurrency: number;
  /** How a part is held: reused part-size buffers filled in place, or the client's own chunks. */
  partBuffering: 'pooled' | 'chunks';
  /** 0: no limit. */
  maxFileSize: number;
  /** 0: no limit. */
  idleTimeoutMs: number;
}

/** Filled in as the upload goes, so the outcome log has the figures whatever happened. */
export interface UploadProgress {
  videoId?: string;
  createdContainer: boolean;
  bytes: number;
  partsAcknowledged: number;
  retries: number;
}

/** What the upload reports as it goes (metrics); every method is cheap and synchronous. */
export interface UploadObserver {
  received(bytes: number): void;
  partAcknowledged(bytes: number, seconds: number): void;
  /** Bytes still held when the upload ends (failed uploads leave some). */
  released(bytes: number): void;
  retried(reason: string): void;
}

const NO_OBSERVER: UploadObserver = {
  received() {},
  partAcknowledged() {},
  released() {},
  retried() {},
};

export interface RelayRequest {
  file: Readable;
  target: UploadTarget;
  /** Aborted by the HTTP layer: the client went away, or its form broke a rule. */
  signal: AbortSignal;
  /** Settles once the whole request body is parsed; the last part waits for it. */
  bodyComplete?: Promise<void>;
  /** Names a stream error that is the client's fault (a truncated form, say). */
  classifyStreamError?: (err: unknown) => RelayError | undefined;
  progress: UploadProgress;
  logger: Logger;
  observer?: UploadObserver;
}

/** The client went away: nobody is left to answer. */
export class ClientGone extends Error {
  constructor() {
    super('the client closed the connection');
    this.name = 'ClientGone';
  }
}

/**
 * Streams one file to api.video: creates the container at the first byte, cuts parts as bytes
 * arrive, keeps up to `partConcurrency` in flight, and pauses reading while the buffer is full.
 * On failure it stops everything in flight and deletes the container it created.
 */
export async function relayUpload(
  client: ApiVideoClient,
  settings: RelaySettings,
  request: RelayRequest,
): Promise<Video> {
  const upload = new Upload(client, settings, request);
  try {
    return await upload.run();
  } catch (err) {
    throw await upload.cleanUp(err);
  } finally {
    upload.dispose();
  }
}

class Upload {
  private readonly internal = new AbortController();
  private readonly signal: AbortSignal;
  private readonly cutter: Cutter;
  private readonly queue: PartQueue<Video>;
  private readonly idle: IdleTimer;
  private readonly observer: UploadObserver;
  /** Bytes received and not yet acknowledged by api.video. */
  private held = 0;
  private readonly onRetry = (event: RetryEvent) => {
    this.request.progress.retries += 1;
    this.observer.retried(event.reason);
    this.request.logger.info(
      { event: 'upstream_retry', ...event, videoId: this.request.progress.videoId },
      'retrying an upstream request',
    );
  };
  private readonly stopReading = () => this.request.file.destroy(this.signal.reason as Error);

  constructor(
    private readonly client: ApiVideoClient,
    private readonly settings: RelaySettings,
    private readonly request: RelayRequest,
  ) {
    this.observer = request.observer ?? NO_OBSERVER;
    this.signal = AbortSignal.any([request.signal, this.internal.signal]);
    this.signal.addEventListener('abort', this.stopReading, { once: true });
    this.cutter =
      settings.partBuffering === 'pooled'
        ? new PooledPartCutter(settings.partSize, settings.partConcurrency + 1)
        : new PartCutter(settings.partSize);
    this.queue = new PartQueue(
      settings.partConcurrency,
      (part, isLast) => this.sendPart(part, isLast),
      (err) => this.internal.abort(err),
    );
    this.idle = new IdleTimer(settings.idleTimeoutMs, () =>
      this.internal.abort(
        new RelayError(
          'upload_idle_timeout',
          `No data from the client for ${settings.idleTimeoutMs} ms.`,
        ),
      ),
    );
  }

  async run(): Promise<Video> {
    const chunks = this.request.file[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    for (;;) {
      this.idle.arm();
      const next = await chunks.next().catch((err: unknown) => {
        throw this.classifyStreamError(err);
      });
      this.idle.disarm();
      if (next.done) break;
      await this.accept(next.value);
    }
    const last = this.cutter.finish();
    if (!last) throw new RelayError('empty_file', 'The file has no bytes.');
    if (this.request.bodyComplete) await abortable(this.request.bodyComplete, this.signal);
    return this.queue.finish(last);
  }

  private async accept(chunk: Buffer): Promise<void> {
    const { progress } = this.request;
    progress.bytes += chunk.length;
    this.held += chunk.length;
    this.observer.received(chunk.length);
    const { maxFileSize } = this.settings;
    if (maxFileSize > 0 && progress.bytes > maxFileSize) {
      throw new RelayError(
        'file_too_large',
        `The file is larger than ${formatBytes(maxFileSize)}.`,
      );
    }
    if (progress.videoId === undefined && chunk.length > 0) await this.openContainer();
    for (const part of this.cutter.push(chunk)) {
      await this.queue.room(); // reading pauses here while the buffer is full
      this.queue.send(part);
    }
  }

  private async openContainer(): Promise<void> {
    const { progress } = this.request;
    const options = { signal: this.signal, onRetry: this.onRetry };
    const container = await openContainer(this.client, this.request.target, options);
    progress.videoId = container.videoId;
    progress.createdContainer = container.created;
  }

  private async sendPart(part: Part, isLast: boolean): Promise<Video> {
    const { progress, logger } = this.request;
    const started = performance.now();
    const video = await this.client.uploadPart(
      progress.videoId!,
      part.number,
      isLast,
      part.chunks,
      {
        signal: this.signal,
        onRetry: this.onRetry,
      },
    );
    const seconds = (performance.now() - started) / 1000;
    progress.partsAcknowledged += 1;
    this.cutter.recycle(part);
    this.held -= part.size;
    this.observer.partAcknowledged(part.size, seconds);
    logger.debug(
      { videoId: progress.videoId, part: part.number, bytes: part.size, isLast, seconds },
      'part acknowledged',
    );
    return video;
  }

  /** Stops what is in flight, deletes a container we created, and names the failure. */
  async cleanUp(err: unknown): Promise<Error> {
    this.internal.abort(err);
    const reason = this.signal.reason as unknown;
    await this.queue.settle();
    const { progress, logger } = this.request;
    if (progress.createdContainer && progress.videoId) {
      await this.client
        .deleteVideo(progress.videoId, { signal: AbortSignal.timeout(30_000) })
        .then(() =>
          logger.info({ videoId: progress.videoId }, 'deleted the container of a failed upload'),
        )
        .catch((e: unknown) =>
          logger.warn(
            { videoId: progress.videoId, err: String(e) },
            'could not delete the container of a failed upload',
          ),
        );
    }
    return reason instanceof ClientGone ? reason : toRelayError(reason);
  }

  /** A stream error we did not cause ourselves (by aborting) is the body's fault. */
  private classifyStreamError(err: unknown): unknown {
    if (this.signal.aborted || isRelayError(err)) return err;
    return this.request.classifyStreamError?.(err) ?? err;
  }

  dispose(): void {
    this.observer.released(this.held);
    this.held = 0;
    this.idle.dispose();
    this.signal.removeEventListener('abort', this.stopReading);
  }
}
