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
  type UploadProgress,
} from '../upload/relay-upload';
import { fieldValuesFromQuery, uploadTarget, type UploadTarget } from '../upload/video-fields';
import { PassThrough, type Readable } from 'node:stream';

export interface UploadRouteDeps {
  client: ApiVideoClient;
  settings: RelaySettings & { requestTimeoutMs: number };
  formLimits: FormLimits;
  logger: Logger;
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
    const stop = new AbortController();
    res.once('close', () => res.writableFinished || stop.abort(new ClientGone()));
    const deadline = uploadDeadline(deps.settings.requestTimeoutMs, stop);
    let intake: Intake | undefined;
    try {
      intake = await abortable(openIntake(req, deps), stop.signal);
      const video = await relayUpload(deps.client, deps.settings, {
        ...intake,
        signal: stop.signal,
        progress,
        logger: req.log,
      });
      res
        .status(201)
        .location(`/v1/videos/${encodeURIComponent(video.videoId)}`)
        .json(video);
      logOutcome(req.log, progress, started, 'completed');
    } catch (err) {
      intake?.stop();
      if (err instanceof ClientGone) {
        req.log.warn(
          { event: 'upload_aborted', videoId: progress.videoId, bytesReceived: progress.bytes },
          'upload_aborted',
        );
        return logOutcome(req.log, progress, started, 'client_aborted');
      }
      logOutcome(req.log, progress, started, isRelayError(err) ? err.code : 'internal_error');
      lingerOnUnreadBody(req, res);
      next(err);
    } finally {
      clearTimeout(deadline);
    }
  };
}

/** UPLOAD_REQUEST_TIMEOUT_MS, enforced here (not by Node) so it ends with a problem and a clean-up. */
function uploadDeadline(ms: number, stop: AbortController): NodeJS.Timeout | undefined {
  if (ms <= 0) return undefined;
  const error = new RelayError('upload_timeout', `The upload took longer than ${ms} ms.`);
  return setTimeout(() => stop.abort(error), ms).unref();
}

async function openIntake(req: Request, deps: UploadRouteDeps): Promise<Intake> {
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  const declared =
    req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length']);
  const max = deps.settings.maxFileSize;
  if (type.startsWith('multipart/form-data')) {
    if (max > 0 && declared !== undefined && declared > max + FORM_OVERHEAD_ALLOWANCE)
      throw tooLarge(max);
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

/** How long, and how much, an unread body is drained after an early error answer. */
const LINGER = { ms: 5_000, bytes: 32 * 1024 * 1024 };

/**
 * An error answered before the body was read. Closing at once would make many clients (undici,
 * some mobile stacks) lose the answer while they are still sending, so, like nginx's lingering
 * close, drain for a bounded time and amount, then cut the connection.
 */
function lingerOnUnreadBody(req: Request, res: Response): void {
  if (req.complete) return;
  res.once('finish', () => {
    if (req.complete) return;
    let drained = 0;
    const cut = () => req.socket.destroy();
    const timer = setTimeout(cut, LINGER.ms).unref();
    req.on('data', (chunk: Buffer) => (drained += chunk.length) > LINGER.bytes && cut());
    req.once('close', () => clearTimeout(timer));
    req.resume();
  });
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
