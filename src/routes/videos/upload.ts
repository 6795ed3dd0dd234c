import type { Readable } from 'node:stream';
import type { Request, RequestHandler, Response } from 'express';
import { bodyStream } from '../../http/stream-buffers';
import { RelayError, isRelayError, ClientGone } from '../../kernel/errors';
import type { Lifecycle } from '../../kernel/lifecycle';
import type { RelayMetrics } from '../../kernel/metrics';
import { abortable } from '../../engine/abortable';
import { freshState, type UploadIdentity } from '../../engine/contract';
import type { UploadEngine } from '../../engine/engine';
import { receiveMultipart, type FormLimits } from '../../http/multipart-intake';
import { fieldValuesFromQuery, uploadTarget, type UploadTarget } from '../../engine/video-fields';
import { principalOf } from '../../http/client-auth';
import { continueIfExpected } from '../../http/linger';
import { guardUploadRequest } from '../../http/upload-request';
import { applyUploadToken, uploadTokenOf } from '../../upload-tokens/bind';
import { idOf } from '../../http/request-id';
import { FORM_OVERHEAD_ALLOWANCE } from '../../kernel/sizes';
import { contentLength } from '../../http/body';
import { fileTooLarge } from '../../kernel/errors';

export interface UploadRouteDeps {
  engine: UploadEngine;
  metrics: RelayMetrics;
  lifecycle: Lifecycle;
  requestTimeoutMs: number;
  formLimits: FormLimits;
}

interface Intake {
  file: Readable;
  target: UploadTarget;
  bodyComplete?: Promise<void>;
  classifyStreamError?: (err: unknown) => RelayError | undefined;
  stop(): void;
}

/**
 * POST /v1/videos: a multipart form or a raw video body, handed to the upload engine as it
 * arrives. This adapter only finds the file and the target, and answers 201 with the video.
 */
export function uploadRoute(deps: UploadRouteDeps): RequestHandler {
  const { engine } = deps;
  return async (req, res, next) => {
    const principal = principalOf(res).id;
    const log = req.log.child({ principal });
    const guard = guardUploadRequest(res, deps);
    let identity: UploadIdentity = {
      uploadId: idOf(req),
      route: 'videos' as const,
      principal,
      uploadTokenId: uploadTokenOf(res)?.id,
      startedAt: Date.now(),
    };
    // Admitted: the upload begins, and whatever happens next is its one outcome.
    engine.begin(identity);
    let intake: Intake | undefined;
    let handed = false;
    try {
      intake = await abortable(
        openIntake(req, res, deps, engine.settings.maxFileSize),
        guard.signal,
      );
      const token = await applyUploadToken(res, intake.target);
      intake.target = token.target;
      // The engine ends the upload however it fails, and its ending gives the use back.
      if (token.tokenUse) identity = { ...identity, tokenUse: token.tokenUse };
      handed = true;
      const video = await engine.relay({
        identity,
        target: intake.target,
        file: intake.file,
        bodyComplete: intake.bodyComplete,
        classifyStreamError: intake.classifyStreamError,
        // The body's length bounds the file's (a form's framing only adds to it).
        sizeHint: contentLength(req) || undefined,
        signal: guard.signal,
        halt: guard.halt,
        logger: log,
        maxFileSize: uploadTokenOf(res)?.record.fields.maxFileSize,
      });
      res
        .status(201)
        .location(`/v1/videos/${encodeURIComponent(video.videoId)}`)
        .json(video);
    } catch (err) {
      intake?.stop();
      if (!handed) {
        // Refused before the engine had it: still the upload's one outcome.
        await engine.end({
          identity,
          target: undefined,
          state: freshState(),
          code: err instanceof ClientGone || isRelayError(err) ? err.code : 'internal_error',
          kind: 'failed',
          bytesReceived: 0,
          logger: log,
          ifUnsure: 'keep',
        });
      }
      // A client that left has nobody to answer; its outcome is already logged.
      if (!(err instanceof ClientGone)) return next(err);
    } finally {
      guard.done();
    }
  };
}

async function openIntake(
  req: Request,
  res: Response,
  deps: UploadRouteDeps,
  max: number,
): Promise<Intake> {
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  const declared = contentLength(req);
  if (type.startsWith('multipart/form-data')) {
    if (max > 0 && declared !== undefined && declared > max + FORM_OVERHEAD_ALLOWANCE)
      throw fileTooLarge(max);
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
      stop: () => form.stop(),
    };
  }
  if (type.startsWith('video/') || type.startsWith('application/octet-stream')) {
    if (max > 0 && declared !== undefined && declared > max) throw fileTooLarge(max);
    if (declared === 0) throw new RelayError('empty_file', 'The file has no bytes.');
    const fields = fieldValuesFromQuery(req.query);
    const filename = fields.get('filename')?.[0];
    const target = uploadTarget(fields, filename);
    continueIfExpected(req, res);
    // Our own stream over the body: stopping it on a failure must not destroy the socket we answer on.
    const file = req.pipe(bodyStream());
    return { file, target, stop: () => req.unpipe(file) };
  }
  throw new RelayError(
    'unsupported_media_type',
    'Send multipart/form-data with a "file" field, or the file itself as video/* or application/octet-stream.',
  );
}
