import type { Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import type { ApiVideoClient } from '../apivideo/client';
import { formatBytes } from '../config';
import { RelayError, isRelayError } from '../errors';
import { abortable } from '../upload/abortable';
import { receiveMultipart, type FormLimits } from '../upload/multipart-intake';
import {
  ClientGone,
  relayUpload,
  type RelaySettings,
  type UploadObserver,
  type UploadProgress,
} from '../upload/relay-upload';
import type { Lifecycle } from '../lifecycle';
import type { RelayMetrics } from '../metrics';
import { principalOf } from './client-auth';
import { continueIfExpected } from './linger';
import { fieldValuesFromQuery, uploadTarget, type UploadTarget } from '../upload/video-fields';
import { PassThrough, type Readable } from 'node:stream';
import { applyUploadToken } from '../upload-tokens/bind';

export interface UploadRouteDeps {
  client: ApiVideoClient;
  metrics: RelayMetrics;
  lifecycle: Lifecycle;
  settings: RelaySettings & { requestTimeoutMs: number };
  formLimits: FormLimits;
}

/** Room for text fields and framing when a multipart body's Content-Length is judged. */
const FORM_OVERHEAD_ALLOWANCE = 1024 * 1024;

interface Intake {
  file: Readable;
  target: UploadTarget;
  bodyComplete?: Promise<void>;
  classifyStreamError?: (err: unknown) => RelayError | undefined;
  stop(): void;
}

/** POST /v1/videos: a multipart form or a raw video body, streamed to api.video as it arrives. */
export function uploadRoute(deps: UploadRouteDeps): RequestHandler {
  return async (req, res, next) => {
    const started = performance.now();
    const progress: UploadProgress = {
      createdContainer: false,
      bytes: 0,
      partsAcknowledged: 0,
      retries: 0,
    };
    const { metrics } = deps;
    const principal = principalOf(res).id;
    const log = req.log.child({ principal });
    const stop = new AbortController();
    res.once('close', () => res.writableFinished || stop.abort(new ClientGone()));
    const deadline = uploadDeadline(deps.settings.requestTimeoutMs, stop);
    const untrack = deps.lifecycle.track(stop);
    metrics.uploadsStarted.inc({ principal });
    metrics.uploadsInProgress.inc();
    let intake: Intake | undefined;
    try {
      intake = await abortable(openIntake(req, res, deps), stop.signal);
      intake.target = await applyUploadToken(res, intake.target);
      const video = await relayUpload(deps.client, deps.settings, {
        ...intake,
        signal: stop.signal,
        progress,
        logger: log,
        observer: observerFor(metrics),
      });
      res
        .status(201)
        .location(`/v1/videos/${encodeURIComponent(video.videoId)}`)
        .json(video);
      metrics.uploadsCompleted.inc({ principal });
      logOutcome(log, progress, started, 'completed');
    } catch (err) {
      intake?.stop();
      const gone = err instanceof ClientGone;
      const code = gone ? 'client_aborted' : isRelayError(err) ? err.code : 'internal_error';
      metrics.uploadsFailed.inc({ code });
      logOutcome(log, progress, started, code);
      if (!gone) return next(err);
      log.warn(
        { event: 'upload_aborted', videoId: progress.videoId, bytesReceived: progress.bytes },
        'upload_aborted',
      );
    } finally {
      clearTimeout(deadline);
      metrics.uploadsInProgress.dec();
      untrack();
    }
  };
}

async function openIntake(req: Request, res: Response, deps: UploadRouteDeps): Promise<Intake> {
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  const declared =
    req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length']);
  const max = deps.settings.maxFileSize;
  if (type.startsWith('multipart/form-data')) {
    if (max > 0 && declared !== undefined && declared > max + FORM_OVERHEAD_ALLOWANCE)
      throw tooLarge(max);
    continueIfExpected(req, res);
    const form = await receiveMultipart(req, deps.formLimits);
    return {
      file: form.stream,
      target: uploadTarget(form.fields, form.filename),
      bodyComplete: form.complete,
      classifyStreamError: (err) =>
        new RelayError(
          'malformed_multipart',
          `The multipart body is malformed: ${(err as Error).message}.`,
        ),
      stop: form.stop,
    };
  }
  if (type.startsWith('video/') || type.startsWith('application/octet-stream')) {
    if (max > 0 && declared !== undefined && declared > max) throw tooLarge(max);
    if (declared === 0) throw new RelayError('empty_file', 'The file has no bytes.');
    const fields = fieldValuesFromQuery(req.query as Record<string, unknown>);
    const filename = fields.get('filename')?.[0];
    const target = uploadTarget(fields, filename);
    continueIfExpected(req, res);
    // Our own stream over the body: stopping it on a failure must not destroy the socket we answer on.
    const file = req.pipe(new PassThrough());
    return { file, target, stop: () => req.unpipe(file) };
  }
  throw new RelayError(
    'unsupported_media_type',
    'Send multipart/form-data with a "file" field, or the file itself as video/* or application/octet-stream.',
  );
}

function tooLarge(max: number): RelayError {
  return new RelayError('file_too_large', `The file is larger than ${formatBytes(max)}.`);
}

function logOutcome(
  logger: Logger,
  progress: UploadProgress,
  started: number,
  outcome: string,
): void {
  const durationMs = Math.round(performance.now() - started);
  const mib = progress.bytes / 1024 / 1024;
  logger.info(
    {
      event: 'upload_finished',
      outcome,
      videoId: progress.videoId,
      bytes: progress.bytes,
      parts: progress.partsAcknowledged,
      retries: progress.retries,
      durationMs,
      mibPerSecond: durationMs > 0 ? Number((mib / (durationMs / 1000)).toFixed(2)) : 0,
    },
    'upload finished',
  );
}

function observerFor(metrics: RelayMetrics): UploadObserver {
  return {
    received: (bytes) => {
      metrics.bytesReceived.inc(bytes);
      metrics.bytesBuffered.inc(bytes);
    },
    partAcknowledged: (bytes, seconds) => {
      metrics.bytesRelayed.inc(bytes);
      metrics.bytesBuffered.dec(bytes);
      metrics.partDuration.observe(seconds);
    },
    released: (bytes) => metrics.bytesBuffered.dec(bytes),
    retried: (reason) => metrics.upstreamRetries.inc({ reason }),
  };
}

/** UPLOAD_REQUEST_TIMEOUT_MS, enforced here (not by Node) so it ends with a problem and a clean-up. */
function uploadDeadline(ms: number, stop: AbortController): NodeJS.Timeout | undefined {
  if (ms <= 0) return undefined;
  const error = new RelayError('upload_timeout', `The upload took longer than ${ms} ms.`);
  return setTimeout(() => stop.abort(error), ms).unref();
}
