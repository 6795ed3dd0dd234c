import type { Logger } from 'pino';
import type { ApiVideoClient } from '../apivideo/client';
import { ApiVideoHttpError } from '../apivideo/errors';
import type { Video } from '../apivideo/types';
import { RelayError } from '../kernel/errors';
import { BlockPool, DEFAULT_BLOCK_SIZE } from './block-pool';
import { openContainer } from './container';
import {
  NO_OBSERVER,
  freshState,
  type Checkpoint,
  type EngineSettings,
  type OneRequestUpload,
  type TransferRequest,
  type TransferResult,
  type UploadIdentity,
  type UploadObserver,
  type UploadState,
} from './contract';
import { IdleTimer } from './idle-timer';
import {
  LedgerError,
  acknowledgedBytes,
  acknowledgedParts,
  mayHaveCompleted,
  partAt,
  recordAcknowledged,
  recordReceived,
  recordSending,
  recordUnknown,
  recordUploaded,
  unsettled,
} from './ledger';
import { MemoryBudget } from './memory-budget';
import type { OutcomeSink, UploadCompleted, UploadFailed, UploadOutcome } from './outcome';
import { askApiVideo, isAlreadyUploaded, type Holding } from './reconcile';
import { Transfer, type Memory } from './transfer';
import { toRelayError } from './upstream-failure';
import { traceUpload } from '../kernel/trace-points';
import type { UploadTarget } from './video-fields';

export interface EngineDeps {
  client: ApiVideoClient;
  settings: EngineSettings;
  /** UPLOAD_MEMORY_BUDGET, shared by every route (unbounded when not given: tests). */
  budget?: MemoryBudget;
  observer?: UploadObserver;
  /** Told of every upload's one outcome, in order, before the client is answered. */
  sinks?: OutcomeSink[];
  logger: Logger;
}

/** How long the relay waits for api.video's view of an upload it must settle. */
const RECONCILE_TIMEOUT_MS = 30_000;

/** An upload whose state the adapter keeps (a tus session, a chunked token upload). */
export interface KeptUpload {
  identity: UploadIdentity;
  target: UploadTarget | undefined;
  /** Updated in place. */
  state: UploadState;
  logger: Logger;
  /** Saves the state; a completion is saved before it is reported. */
  checkpoint?: Checkpoint;
}

export type Settled = { kind: 'completed'; video: Video } | { kind: 'open' };

export type Ended =
  { kind: 'completed'; video: Video } | { kind: 'failed'; containerDeleted: boolean };

/**
 * The one upload engine. Every route hands it bytes, a target and a signal: it opens the
 * container, cuts parts, records each in the ledger before it goes out, keeps up to
 * `partConcurrency` in flight, sends the last part only after every earlier one is acknowledged
 * and the input is complete, asks api.video whenever it did not see an outcome, cleans up, and
 * reports each upload's single outcome to the sinks. Routes only adapt.
 *
 * Lifecycle: `begin` once per upload; then any number of `transfer`/`sendChunk` requests (one
 * for a one-request upload) and `reconcile` calls; it ends exactly once, by a completion (from a
 * transfer, a chunk, or a reconciliation) or by `end` (failed, expired), which asks api.video
 * first and may itself find a completion.
 */
export class UploadEngine {
  readonly settings: EngineSettings;
  readonly budget: MemoryBudget;
  private readonly observer: UploadObserver;
  private readonly sinks: OutcomeSink[];
  private readonly memory: Memory;

  constructor(private readonly deps: EngineDeps) {
    this.settings = deps.settings;
    this.observer = deps.observer ?? NO_OBSERVER;
    this.sinks = deps.sinks ?? [];
    this.budget = deps.budget ?? new MemoryBudget(Number.MAX_SAFE_INTEGER);
    // Idle blocks kept for reuse: enough for a burst, a small share of the budget.
    const keep = Math.min(64 * 1024 * 1024, this.budget.budget / 8);
    this.memory =
      deps.settings.partBuffering === 'pooled'
        ? {
            budget: this.budget,
            pool: new BlockPool(DEFAULT_BLOCK_SIZE, keep),
            largePool: new BlockPool(1024 * 1024, keep),
          }
        : { budget: this.budget, pool: undefined, largePool: undefined };
  }

  /** An upload begins: counted once, whatever its route and however many requests it takes. */
  begin(identity: UploadIdentity): void {
    // Names the upload on the span of the request that begins it (nothing when traces are off).
    traceUpload(identity, undefined);
    this.observer.started(identity.route);
  }

  /** A whole upload in one request: completes, or ends failed with its container deleted. */
  async relay(upload: OneRequestUpload): Promise<Video> {
    const state = freshState();
    const result = await this.transfer({ ...upload, state, end: { kind: 'body' } });
    if (result.kind === 'completed') return result.video;
    const error =
      result.kind === 'interrupted'
        ? result.error
        : new RelayError('internal_error', 'The body ended before the file.');
    const ended = await this.end({
      identity: upload.identity,
      target: upload.target,
      state,
      code: error.code,
      kind: 'failed',
      bytesReceived: result.received,
      logger: upload.logger,
      ifUnsure: 'keep',
    });
    // The client left while the last part was on the wire, and api.video kept it.
    if (ended.kind === 'completed') return ended.video;
    throw error;
  }

  /**
   * Moves one request's bytes. Never throws for what a client or api.video did: it answers how the
   * request ended, with the bytes the adapter must keep for a resumable upload.
   */
  async transfer(request: TransferRequest): Promise<TransferResult & { received: number }> {
    const transfer = new Transfer(
      this.deps.client,
      this.settings,
      this.observer,
      this.memory,
      request,
    );
    try {
      const outcome = await transfer.run();
      if (outcome.kind === 'completed') await this.emit(this.completed(request, outcome.video));
      return { ...outcome, received: transfer.received };
    } finally {
      transfer.dispose();
    }
  }

  /**
   * Settles what a kept upload left unsettled (parts whose answer nobody saw: a request that was
   * cut or superseded, an instance that died, a checkpoint that failed) by asking api.video,
   * before the adapter reports an offset or moves more bytes. A source found complete is the
   * upload's completion. Throws (502/504) only when a last part may have landed and api.video
   * cannot be asked: then no answer would be true.
   */
  async reconcile(upload: KeptUpload): Promise<Settled> {
    const { state, logger } = upload;
    if (state.ledger.complete || !state.videoId || unsettled(state.ledger).length === 0)
      return { kind: 'open' };
    let holding: Holding;
    try {
      holding = await this.ask(state.videoId, logger, 'unsettled_parts');
    } catch (err) {
      if (mayHaveCompleted(state.ledger)) throw toRelayError(err);
      // Parts other than the last are simply sent again, with their own bytes.
      return { kind: 'open' };
    }
    if (holding.kind === 'uploaded' && recordUploaded(state.ledger))
      return this.completeKept(upload, holding.video);
    if (holding.kind === 'uploading') recordReceived(state.ledger, holding.received);
    // Nobody is sending what is left unacknowledged: it is unknown until sent again.
    for (const part of unsettled(state.ledger)) recordUnknown(state.ledger, part.number);
    await upload.checkpoint?.(structuredClone(state), {});
    return { kind: 'open' };
  }

  /**
   * One part the client cut itself (api.video's own chunked protocol, `POST /upload?token=`): the
   * request's bytes are sent as exactly that part, streamed straight through and read once, so
   * nothing is held but what is in flight and nothing is retried here (the client retries the
   * chunk, as api.video's uploaders do). Opens the container on the upload's first part, letting a
   * create finish even if the client left, so that it is known. Completes the upload (its one
   * outcome) when api.video holds the whole source. A failed part is not a failed upload: the
   * adapter ends the upload when it gives it up. Throws what went wrong.
   */
  async sendChunk(
    request: KeptUpload & {
      target: UploadTarget;
      part: number;
      isLast: boolean;
      file: AsyncIterable<Buffer>;
      /** The part's length when the client declared it (Content-Length upstream); else chunked. */
      length?: number;
      signal: AbortSignal;
    },
  ): Promise<{ video: Video; bytes: number; completed: boolean }> {
    const { state, logger } = request;
    const ledger = state.ledger;
    // The last part completes the video at api.video: it goes only after every earlier part is
    // acknowledged, whatever order the client sends its chunks in.
    if (request.isLast) {
      for (let n = ledger.ackedParts + 1; n < request.part; n++) {
        if (partAt(ledger, n)?.state !== 'acknowledged')
          throw new RelayError(
            'upload_chunk_invalid',
            `The last chunk came before part ${n} was acknowledged: send the missing chunks first.`,
          );
      }
    }
    if (state.videoId === undefined) {
      const container = await openContainer(
        this.deps.client,
        request.target,
        request.identity.principal,
      );
      state.videoId = container.videoId;
      state.createdContainer = container.created;
      await request.checkpoint?.(structuredClone(state), {});
      request.signal.throwIfAborted();
    }
    // A chunk the client sends again after its answer was lost: sent again as it is, while the
    // ledger keeps the part acknowledged.
    const again =
      request.part <= ledger.ackedParts || partAt(ledger, request.part)?.state === 'acknowledged';
    if (!again) {
      try {
        recordSending(ledger, {
          number: request.part,
          size: request.length ?? 0,
          last: request.isLast,
        });
      } catch (err) {
        if (err instanceof LedgerError)
          throw new RelayError(
            'upload_chunk_invalid',
            `Part ${request.part} was sent before with another length or label: send the same chunk again.`,
          );
        throw err;
      }
      await request.checkpoint?.(structuredClone(state), {});
    }
    // UPLOAD_IDLE_TIMEOUT_MS, as for every route: a client that stops mid-chunk frees its slot.
    const internal = new AbortController();
    const signal = AbortSignal.any([request.signal, internal.signal]);
    const idleMs = this.settings.idleTimeoutMs;
    const idle = new IdleTimer(idleMs, () =>
      internal.abort(
        new RelayError('upload_idle_timeout', `No data from the client for ${idleMs} ms.`),
      ),
    );
    let bytes = 0;
    const observer = this.observer;
    async function* counted(): AsyncGenerator<Buffer> {
      const chunks = request.file[Symbol.asyncIterator]();
      for (;;) {
        idle.arm();
        const next = await chunks.next();
        idle.disarm();
        if (next.done) return;
        bytes += next.value.length;
        observer.received(next.value.length);
        yield next.value;
      }
    }
    const started = performance.now();
    let video: Video;
    try {
      video = await this.deps.client.uploadPartStream(
        state.videoId,
        request.part,
        request.isLast,
        counted(),
        request.length,
        { signal },
      );
    } catch (err) {
      if (!again) recordUnknown(ledger, request.part);
      // The source may be complete although this answer was not seen (or says so).
      if (isAlreadyUploaded(err) || request.isLast) {
        const settled = await this.reconcile(request).catch(() => ({ kind: 'open' }) as const);
        if (settled.kind === 'completed') return { video: settled.video, bytes, completed: true };
      } else if (!again) {
        await request.checkpoint?.(structuredClone(state), {}).catch(() => undefined);
      }
      signal.throwIfAborted();
      throw toRelayError(err);
    } finally {
      idle.dispose();
    }
    const seconds = (performance.now() - started) / 1000;
    observer.partAcknowledged(bytes, seconds);
    logger.debug(
      { videoId: state.videoId, part: request.part, bytes, isLast: request.isLast, seconds },
      'part acknowledged',
    );
    if (!again) recordAcknowledged(ledger, request.part, bytes);
    if (ledger.complete) {
      const completed = await this.completeKept(request, video);
      return { video: completed.video, bytes, completed: true };
    }
    await request.checkpoint?.(structuredClone(state), {});
    return { video, bytes, completed: false };
  }

  /**
   * Ends an upload that will not complete (failed, terminated, expired): the only way one fails.
   * If a last part may have landed, api.video is asked first, and a complete source makes it a
   * completion instead; a container whose source may be complete is never deleted. When
   * api.video cannot be asked, `ifUnsure` says whether to give up keeping the container
   * (`keep`: a one-request upload, nobody will ask again) or to throw (`throw`: the caller
   * retries later, as the sweep does).
   */
  async end(
    args: KeptUpload & {
      code: string;
      kind: 'failed' | 'expired';
      bytesReceived: number;
      ifUnsure: 'keep' | 'throw';
    },
  ): Promise<Ended> {
    const { state, logger } = args;
    let containerDeleted = false;
    let mayDelete = state.createdContainer && !!state.videoId && !state.ledger.complete;
    if (state.videoId && mayHaveCompleted(state.ledger)) {
      try {
        const holding = await this.ask(state.videoId, logger, args.kind);
        if (holding.kind === 'uploaded' && recordUploaded(state.ledger)) {
          const { video } = await this.completeKept(args, holding.video);
          return { kind: 'completed', video };
        }
      } catch (err) {
        if (args.ifUnsure === 'throw') throw toRelayError(err);
        mayDelete = false;
        logger.warn(
          { event: 'container_kept', videoId: state.videoId, err: String(err) },
          'kept the container of a failed upload: api.video could not say whether its last part landed',
        );
      }
    }
    if (mayDelete) {
      containerDeleted = await this.deps.client
        .deleteVideo(state.videoId!, { signal: AbortSignal.timeout(30_000) })
        .then(() => true)
        .catch((err: unknown) => {
          if (err instanceof ApiVideoHttpError && err.status === 404) return true;
          logger.warn(
            { videoId: state.videoId, err: String(err) },
            'could not delete the container of a failed upload',
          );
          return false;
        });
      if (containerDeleted)
        logger.info({ videoId: state.videoId }, 'deleted the container of a failed upload');
    }
    const failed: UploadFailed = {
      ...this.outcomeBase(args.identity, args.target, state, args.bytesReceived),
      kind: args.kind,
      code: args.code,
      containerDeleted,
    };
    await this.emit(failed);
    return { kind: 'failed', containerDeleted };
  }

  /** A completion of a kept upload: saved first, then reported (the one outcome). */
  private async completeKept(
    upload: KeptUpload,
    video: Video,
  ): Promise<{ kind: 'completed'; video: Video }> {
    await upload.checkpoint?.(structuredClone(upload.state), {
      completed: video,
      consumedCarried: true,
    });
    await this.emit(this.completed(upload, video));
    return { kind: 'completed', video };
  }

  private async ask(videoId: string, logger: Logger, cause: string): Promise<Holding> {
    try {
      const holding = await askApiVideo(this.deps.client, videoId, {
        signal: AbortSignal.timeout(RECONCILE_TIMEOUT_MS),
      });
      logger.info(
        { event: 'reconciled', videoId, cause, holding: holding.kind },
        'asked api.video what it holds of an upload',
      );
      return holding;
    } catch (err) {
      logger.warn(
        { event: 'reconcile_failed', videoId, cause, err: String(err) },
        'could not ask api.video what it holds of an upload',
      );
      throw err;
    }
  }

  private completed(
    upload: Pick<TransferRequest, 'identity' | 'state'> & { target: UploadTarget | undefined },
    video: Video,
  ): UploadCompleted {
    const { state } = upload;
    return {
      ...this.outcomeBase(upload.identity, upload.target, state, acknowledgedBytes(state.ledger)),
      kind: 'completed',
      videoId: video.videoId,
      video,
    };
  }

  private outcomeBase(
    identity: UploadIdentity,
    target: UploadTarget | undefined,
    state: UploadState,
    bytesReceived: number,
  ) {
    const payload = target?.kind === 'create' ? target.payload : undefined;
    return {
      uploadId: identity.uploadId,
      route: identity.route,
      principal: identity.principal,
      ...(identity.uploadTokenId ? { uploadTokenId: identity.uploadTokenId } : {}),
      ...(identity.tokenUse ? { tokenUse: identity.tokenUse } : {}),
      ...(state.videoId ? { videoId: state.videoId } : {}),
      ...(payload ? { title: payload.title } : {}),
      ...(payload?.metadata ? { metadata: payload.metadata } : {}),
      bytesReceived,
      bytesAcknowledged: acknowledgedBytes(state.ledger),
      parts: acknowledgedParts(state.ledger),
      retries: state.retries,
      durationMs: Date.now() - identity.startedAt,
    };
  }

  /** Every sink hears every outcome; one that fails is logged, never allowed to undo the upload. */
  private async emit(outcome: UploadOutcome): Promise<void> {
    for (const sink of this.sinks) {
      try {
        await sink.record(outcome);
      } catch (err) {
        this.deps.logger.error(
          { err: String(err), uploadId: outcome.uploadId, videoId: outcome.videoId },
          'an upload outcome could not be recorded',
        );
      }
    }
  }
}
