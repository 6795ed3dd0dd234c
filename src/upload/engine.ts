import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { ApiVideoClient } from '../apivideo/client';
import { ApiVideoHttpError } from '../apivideo/errors';
import type { RetryEvent } from '../apivideo/transport';
import type { Video } from '../apivideo/types';
import { formatBytes } from '../config';
import { RelayError, isRelayError } from '../errors';
import { abortable } from './abortable';
import { openContainer } from './container';
import { IdleTimer } from './idle-timer';
import type {
  OutcomeSink,
  UploadCompleted,
  UploadFailed,
  UploadOutcome,
  UploadRoute,
} from './outcome';
import { PartQueue, type Part } from './part-queue';
import { BlockPool, DEFAULT_BLOCK_SIZE } from './block-pool';
import { BudgetedCutter, type HeldPart } from './budgeted-cutter';
import { MemoryBudget, type BudgetAccount, type Reservation } from './memory-budget';
import { PartSizer } from './part-size';
import { toRelayError } from './upstream-failure';
import type { UploadTarget } from './video-fields';

export interface EngineSettings {
  partSize: number;
  partConcurrency: number;
  /** How a part is held: reused part-size buffers filled in place, or the client's own chunks. */
  partBuffering: 'pooled' | 'chunks';
  /** 0: no limit. */
  maxFileSize: number;
  /** 0: no limit. */
  idleTimeoutMs: number;
}

/**
 * What api.video has of an upload. A one-request upload starts from nothing; a resumable one
 * carries it between requests (the tus session record).
 */
export interface UploadState {
  videoId: string | undefined;
  createdContainer: boolean;
  /** The first part api.video has not acknowledged: parts before it are all acknowledged. */
  nextPart: number;
  /** Bytes of the acknowledged parts 1 .. nextPart-1. */
  ackedBytes: number;
  /**
   * Parts the client cut itself (api.video's chunked protocol): number → bytes, as acknowledged.
   * A retried chunk replaces its part, it is never counted twice.
   */
  clientParts?: Record<number, number>;
  retries: number;
}

export const freshState = (): UploadState => ({
  videoId: undefined,
  createdContainer: false,
  nextPart: 1,
  ackedBytes: 0,
  retries: 0,
});

export interface UploadIdentity {
  uploadId: string;
  route: UploadRoute;
  principal: string;
  uploadTokenId?: string;
  /** When the upload began (epoch ms): a resumable upload's creation, not this request. */
  startedAt: number;
}

/** Bytes an earlier request left with the adapter (a tus tail), fetched only when a part needs them. */
export interface CarriedBytes {
  bytes: number;
  load(): Promise<Buffer[]>;
}

/** What the adapter keeps of the unsent bytes: appended to what it already holds, or instead of it. */
export type TailChange =
  | { kind: 'append'; chunks: Buffer[]; bytes: number }
  | { kind: 'replace'; chunks: Buffer[]; bytes: number };

export interface TransferRequest {
  identity: UploadIdentity;
  target: UploadTarget;
  /** Updated in place as api.video acknowledges parts. */
  state: UploadState;
  file: Readable;
  /** Aborted by the HTTP layer: the client went away, a deadline passed, the relay is draining. */
  signal: AbortSignal;
  logger: Logger;
  /**
   * Where the file ends: at the end of this request's body, or at a declared length (tus; undefined
   * while deferred). Only then does the last part go out, labelled `part N/N`.
   */
  end: { kind: 'body' } | { kind: 'length'; length: number | undefined };
  carried?: CarriedBytes;
  /** A limit below the engine's own for this upload (an upload token's maxFileSize). */
  maxFileSize?: number;
  /** Settles once the whole request body is parsed; the last part waits for it. */
  bodyComplete?: Promise<void>;
  /** Names a stream error that is the client's fault (a truncated form, say). */
  classifyStreamError?: (err: unknown) => RelayError | undefined;
  /**
   * An upper bound of the file bytes this request brings (a Content-Length), when the route knows
   * one: a short upload then reserves what it can hold, not a whole part. A declared length (tus)
   * gives its own bound.
   */
  sizeHint?: number;
  /**
   * Saves `state` durably; called one at a time whenever it changes (the container is known, the
   * acknowledged prefix grows). `consumedCarried`: the carried bytes are now inside acknowledged
   * parts, so the adapter drops them. A failure stops the transfer.
   */
  checkpoint?: (state: UploadState, consumedCarried: boolean) => Promise<void>;
}

export type TransferResult =
  | { kind: 'completed'; video: Video }
  /** The body ended before the file did (tus): the adapter keeps `tail` and answers the offset. */
  | { kind: 'paused'; tail: TailChange }
  | { kind: 'interrupted'; error: RelayError | ClientGone; tail: TailChange };

/** What the engine reports as bytes move (metrics); every method is cheap and synchronous. */
export interface UploadObserver {
  received(bytes: number): void;
  /** Bytes held in memory went up (positive) or down (negative). */
  held(delta: number): void;
  partAcknowledged(bytes: number, seconds: number): void;
  retried(reason: string): void;
  /** A resumable upload's request ended without the upload ending (it can be resumed). */
  interrupted(route: UploadRoute, code: string): void;
}

export const NO_OBSERVER: UploadObserver = {
  received() {},
  held() {},
  partAcknowledged() {},
  retried() {},
  interrupted() {},
};

/** The client went away: nobody is left to answer. */
export class ClientGone extends Error {
  readonly code = 'client_aborted';
  constructor() {
    super('the client closed the connection');
    this.name = 'ClientGone';
  }
}

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

export interface OneRequestUpload {
  identity: UploadIdentity;
  target: UploadTarget;
  file: Readable;
  signal: AbortSignal;
  logger: Logger;
  bodyComplete?: Promise<void>;
  classifyStreamError?: (err: unknown) => RelayError | undefined;
  /** A limit below the engine's own for this upload (an upload token's maxFileSize). */
  maxFileSize?: number;
  sizeHint?: number;
}

/**
 * The one upload engine. Every route hands it bytes, a target and a signal: it opens the
 * container, cuts parts, keeps up to `partConcurrency` in flight, sends the last part only after
 * every earlier one is acknowledged and the input is complete, cleans up, and reports each
 * upload's single outcome (completed or failed) to the sinks. Routes only adapt.
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

  /** A whole upload in one request: completes, or fails with its container deleted. */
  async relay(upload: OneRequestUpload): Promise<Video> {
    const state = freshState();
    const result = await this.transfer({ ...upload, state, end: { kind: 'body' } });
    if (result.kind === 'completed') return result.video;
    const error =
      result.kind === 'interrupted'
        ? result.error
        : new RelayError('internal_error', 'The body ended before the file.');
    await this.fail({
      identity: upload.identity,
      target: upload.target,
      state,
      code: error.code,
      kind: 'failed',
      bytesReceived: result.received,
      logger: upload.logger,
    });
    throw error;
  }

  /**
   * One part the client cut itself (api.video's own chunked protocol, `POST /upload?token=`): the
   * request's bytes are sent as exactly that part, streamed straight through and read once, so
   * nothing is held but what is in flight and nothing is retried here (the client retries the
   * chunk, as api.video's uploaders do). Opens the container on the upload's first part, letting a
   * create finish even if the client left so fail() can delete it. Completes the upload (its one
   * outcome) when the last part is acknowledged. A failed part is not a failed upload: the
   * adapter calls fail() when it gives the upload up. Throws what went wrong.
   */
  async sendPart(request: {
    identity: UploadIdentity;
    target: UploadTarget;
    /** Updated in place: the container, and the acknowledged bytes and parts. */
    state: UploadState;
    part: number;
    isLast: boolean;
    file: AsyncIterable<Buffer>;
    /** The part's length when the client declared it (Content-Length upstream); else chunked. */
    length?: number;
    signal: AbortSignal;
    logger: Logger;
  }): Promise<{ video: Video; bytes: number }> {
    const { state } = request;
    const parts = (state.clientParts ??= {});
    // The last part completes the video at api.video: it goes only after every earlier part is
    // acknowledged, whatever order the client sends its chunks in.
    if (request.isLast) {
      const missing = Array.from({ length: request.part - 1 }, (_, i) => i + 1).filter(
        (n) => parts[n] === undefined,
      );
      if (missing.length > 0)
        throw new RelayError(
          'upload_chunk_invalid',
          `The last chunk came before part ${missing[0]} was acknowledged: send the missing chunks first.`,
        );
    }
    if (state.videoId === undefined) {
      const container = await openContainer(
        this.deps.client,
        request.target,
        request.identity.principal,
      );
      state.videoId = container.videoId;
      state.createdContainer = container.created;
      request.signal.throwIfAborted();
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
      signal.throwIfAborted();
      throw toRelayError(err);
    } finally {
      idle.dispose();
    }
    const seconds = (performance.now() - started) / 1000;
    observer.partAcknowledged(bytes, seconds);
    parts[request.part] = bytes;
    // Distinct parts only: a chunk sent again (its answer was lost) is not more bytes.
    state.ackedBytes = Object.values(parts).reduce((sum, n) => sum + n, 0);
    let next = 1;
    while (parts[next] !== undefined) next += 1;
    state.nextPart = next;
    request.logger.debug(
      { videoId: state.videoId, part: request.part, bytes, isLast: request.isLast, seconds },
      'part acknowledged',
    );
    if (request.isLast) await this.emit(this.completed(request, video));
    return { video, bytes };
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
   * Ends an upload that will not complete: deletes the container the relay made for it (unless
   * it is complete), and reports the outcome. The only way an upload fails.
   */
  async fail(args: {
    identity: UploadIdentity;
    target: UploadTarget | undefined;
    state: UploadState;
    code: string;
    kind: 'failed' | 'expired';
    bytesReceived: number;
    logger: Logger;
    /** A complete video is never deleted. */
    completed?: boolean;
  }): Promise<{ containerDeleted: boolean }> {
    const { state, logger } = args;
    let containerDeleted = false;
    if (state.createdContainer && state.videoId && !args.completed) {
      containerDeleted = await this.deps.client
        .deleteVideo(state.videoId, { signal: AbortSignal.timeout(30_000) })
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
    return { containerDeleted };
  }

  private completed(
    request: Pick<TransferRequest, 'identity' | 'target' | 'state'>,
    video: Video,
  ): UploadCompleted {
    const { state } = request;
    return {
      ...this.outcomeBase(request.identity, request.target, state, state.ackedBytes),
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
      ...(state.videoId ? { videoId: state.videoId } : {}),
      ...(payload ? { title: payload.title } : {}),
      ...(payload?.metadata ? { metadata: payload.metadata } : {}),
      bytesReceived,
      bytesAcknowledged: state.ackedBytes,
      parts: state.nextPart - 1,
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

/** The process-wide memory every transfer draws on. */
interface Memory {
  budget: MemoryBudget;
  /** Blocks parts are copied into (UPLOAD_PART_BUFFERING=pooled); none: the client's chunks. */
  pool: BlockPool | undefined;
  /** 1 MiB blocks for big parts (fast clients): fewer socket writes per part. */
  largePool: BlockPool | undefined;
}

/** One request's worth of an upload: its bytes in, parts out. */
class Transfer {
  private readonly internal = new AbortController();
  private readonly signal: AbortSignal;
  private readonly account: BudgetAccount;
  private readonly cutter: BudgetedCutter;
  private readonly queue: PartQueue<Video>;
  private readonly idle: IdleTimer;
  /** Parts cut in this transfer and not yet part of the acknowledged prefix. */
  private readonly open = new Map<number, HeldPart>();
  /** Room for the bytes kept in `early` (and the carried ones), reserved before they are held. */
  private earlyRoom: Reservation | undefined;
  private readonly release = async (part: HeldPart) => {
    this.open.set(part.number, part);
    await this.queue.room(); // reading pauses here while the parts in flight are at the limit
    this.queue.send(part);
  };
  /** The carried bytes are fetched only once a part needs them; bytes that come first wait here. */
  private carriedLoaded: boolean;
  private early: Buffer[] = [];
  private earlyBytes = 0;
  /** Where the next byte of this request goes in the file. */
  private position: number;
  received = 0;
  private held = 0;
  private creation: Promise<{ videoId: string; created: boolean }> | undefined;
  private checkpoints: Promise<void> = Promise.resolve();
  private readonly onRetry = (event: RetryEvent) => {
    this.request.state.retries += 1;
    this.observer.retried(event.reason);
    this.request.logger.info(
      { event: 'upstream_retry', ...event, videoId: this.request.state.videoId },
      'retrying an upstream request',
    );
  };
  private readonly stopReading = () => this.request.file.destroy(this.signal.reason as Error);

  constructor(
    private readonly client: ApiVideoClient,
    private readonly settings: EngineSettings,
    private readonly observer: UploadObserver,
    memory: Memory,
    private readonly request: TransferRequest,
  ) {
    this.signal = AbortSignal.any([request.signal, this.internal.signal]);
    this.signal.addEventListener('abort', this.stopReading, { once: true });
    const { state } = request;
    this.carriedLoaded = !request.carried || request.carried.bytes === 0;
    this.position = state.ackedBytes + (request.carried?.bytes ?? 0);
    // Every part's bytes are held in room reserved from UPLOAD_MEMORY_BUDGET, whatever the route.
    // Pooled blocks go back to the pool only once api.video acknowledged their part, so the
    // unacknowledged parts a resumable upload keeps as its tail are never reused under it.
    this.account = memory.budget.account();
    const { end } = request;
    const bound =
      end.kind === 'length' && end.length !== undefined
        ? end.length - state.ackedBytes
        : request.sizeHint !== undefined
          ? request.sizeHint + (request.carried?.bytes ?? 0)
          : undefined;
    this.cutter = new BudgetedCutter({
      account: this.account,
      sizer: new PartSizer({ max: settings.partSize }),
      pool: memory.pool,
      largePool: memory.largePool,
      firstNumber: state.nextPart,
      maxBytes: bound,
    });
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

  async run(): Promise<TransferResult> {
    try {
      await this.read();
      return await this.finish();
    } catch (err) {
      return this.interrupted(err);
    }
  }

  private get declaredLength(): number | undefined {
    const { end } = this.request;
    return end.kind === 'length' ? end.length : undefined;
  }

  private async read(): Promise<void> {
    const chunks = this.request.file[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    for (;;) {
      this.idle.arm();
      const waitStarted = performance.now();
      const next = await chunks.next().catch((err: unknown) => {
        throw this.classifyStreamError(err);
      });
      // Time spent waiting for the client only: how fast it fills parts (the adaptive size).
      const clientMs = performance.now() - waitStarted;
      this.idle.disarm();
      if (next.done) return;
      await this.accept(next.value, clientMs);
    }
  }

  /** Waits for room in the budget (not the client's idleness: the idle timer is off here). */
  private async accept(chunk: Buffer, clientMs = 0): Promise<void> {
    if (chunk.length === 0) return;
    if (this.signal.aborted) throw this.signal.reason;
    const length = this.declaredLength;
    if (length !== undefined && this.position + chunk.length > length) {
      throw new RelayError(
        'upload_length_exceeded',
        `The body goes past Upload-Length (${length} bytes).`,
      );
    }
    const maxFileSize = effectiveMax(this.settings.maxFileSize, this.request.maxFileSize);
    if (maxFileSize > 0 && this.position + chunk.length > maxFileSize) {
      throw new RelayError(
        'file_too_large',
        `The file is larger than ${formatBytes(maxFileSize)}.`,
      );
    }
    this.position += chunk.length;
    this.received += chunk.length;
    this.hold(chunk.length);
    this.observer.received(chunk.length);
    if (this.request.state.videoId === undefined) await this.openContainer();
    if (!this.carriedLoaded) {
      // Room for a whole part, reserved before the first early byte is held: the carried bytes
      // and these fit in it until a part can be cut, and it becomes that first part.
      this.earlyRoom ??= await this.account.reserve(this.settings.partSize, {
        signal: this.signal,
      });
      this.early.push(chunk);
      this.earlyBytes += chunk.length;
      const carried = this.request.carried!.bytes;
      // No part can be cut yet: keep the new bytes here, and the carried ones where they are.
      if (carried + this.earlyBytes <= this.settings.partSize && this.position !== length) {
        this.earlyRoom.hold(chunk.length);
        return;
      }
      await this.loadCarried(clientMs);
      return;
    }
    await this.cutter.push(chunk, this.release, this.signal, clientMs);
  }

  private async loadCarried(clientMs = 0): Promise<void> {
    // Room first (the early bytes' if any, else a part's), then the bytes: never held unreserved.
    const room =
      this.earlyRoom ??
      (await this.account.reserve(this.settings.partSize, { signal: this.signal }));
    this.earlyRoom = undefined;
    room.unhold();
    this.cutter.adopt(room);
    const carried = await abortable(this.request.carried!.load(), this.signal);
    this.carriedLoaded = true;
    this.hold(carried.reduce((n, c) => n + c.length, 0));
    const early = this.early;
    this.early = [];
    this.earlyBytes = 0;
    for (const chunk of [...carried, ...early])
      await this.cutter.push(chunk, this.release, this.signal, clientMs);
  }

  private async finish(): Promise<TransferResult> {
    const length = this.declaredLength;
    const { end } = this.request;
    const atEnd = end.kind === 'body' || (length !== undefined && this.position === length);
    if (!atEnd) {
      // The body ended before the file: what is unsent stays with the adapter.
      await this.queue.settle();
      this.queue.throwIfFailed();
      await this.checkpoints;
      return { kind: 'paused', tail: this.unsentTail() };
    }
    if (!this.carriedLoaded) await this.loadCarried();
    if (this.position === 0) throw new RelayError('empty_file', 'The file has no bytes.');
    const last = this.cutter.finish();
    if (!last) {
      // Everything was sent in earlier requests except... nothing: cannot happen, since a full
      // part is only released once a further byte exists.
      throw new RelayError('internal_error', 'No last part to send.');
    }
    this.open.set(last.number, last);
    if (this.request.bodyComplete) await abortable(this.request.bodyComplete, this.signal);
    const video = await this.queue.finish(last);
    await this.checkpoints;
    return { kind: 'completed', video };
  }

  private async openContainer(): Promise<void> {
    const { state, target } = this.request;
    // Not the request's signal: a container being created is let finish even when the client
    // leaves, so that its id is known and it can be deleted (or kept, for a resumable upload).
    this.creation = openContainer(this.client, target, this.request.identity.principal, {
      signal: AbortSignal.timeout(120_000),
      onRetry: this.onRetry,
    });
    const container = await abortable(this.creation, this.signal);
    this.creation = undefined;
    state.videoId = container.videoId;
    state.createdContainer = container.created;
    // Saved before the first part goes out: an instance that dies now leaves no unknown container.
    await this.saveCheckpoint();
  }

  private async sendPart(part: Part, isLast: boolean): Promise<Video> {
    const { state, logger } = this.request;
    const started = performance.now();
    const video = await this.client.uploadPart(state.videoId!, part.number, isLast, part.chunks, {
      signal: this.signal,
      onRetry: this.onRetry,
    });
    const seconds = (performance.now() - started) / 1000;
    this.observer.partAcknowledged(part.size, seconds);
    logger.debug(
      { videoId: state.videoId, part: part.number, bytes: part.size, isLast, seconds },
      'part acknowledged',
    );
    (part as Part & { acked?: boolean }).acked = true;
    // api.video has these bytes: they are not held any more, and a pooled buffer goes back at
    // once. Waiting for the parts before it would let reading go on with no buffer to fill.
    this.hold(-part.size);
    (part as HeldPart).acknowledged(); // its room back to the budget, its blocks to the pool
    // The acknowledged prefix (what a resumable upload may count) grows only through contiguous
    // parts.
    let advanced = false;
    for (
      let p = this.open.get(state.nextPart);
      p && (p as { acked?: boolean }).acked;
      p = this.open.get(state.nextPart)
    ) {
      this.open.delete(p.number);
      state.ackedBytes += p.size;
      state.nextPart += 1;
      advanced = true;
    }
    if (advanced) await this.saveCheckpoint();
    return video;
  }

  private saveCheckpoint(): Promise<void> {
    const save = this.request.checkpoint;
    if (!save) return Promise.resolve();
    const snapshot = { ...this.request.state };
    const consumed = this.carriedLoaded;
    this.checkpoints = this.checkpoints.then(() =>
      save(snapshot, consumed).catch((err: unknown) => {
        this.internal.abort(err);
        throw err;
      }),
    );
    return this.checkpoints;
  }

  /** Stops what is in flight and says which bytes a resumable upload keeps. */
  private async interrupted(err: unknown): Promise<TransferResult> {
    this.internal.abort(err);
    const reason = this.signal.reason as unknown;
    await this.queue.settle();
    // A container being created when the client left: wait for its id, so that it is known.
    if (this.creation) {
      const container = await this.creation.catch(() => undefined);
      if (container) {
        this.request.state.videoId = container.videoId;
        this.request.state.createdContainer = container.created;
      }
    }
    await this.checkpoints.catch(() => undefined);
    const error = reason instanceof ClientGone ? reason : toRelayError(reason);
    return { kind: 'interrupted', error, tail: this.unsentTail() };
  }

  /**
   * The bytes after the acknowledged prefix that this transfer still holds, from the first
   * unacknowledged byte on, at most one part: what the adapter keeps (less is always safe, since
   * the client re-sends from the offset it is told).
   */
  private unsentTail(): TailChange {
    if (!this.carriedLoaded) {
      return this.capped({ kind: 'append', chunks: this.early, bytes: this.earlyBytes });
    }
    const first = this.open.get(this.request.state.nextPart);
    if (first) return this.capped({ kind: 'replace', chunks: first.chunks, bytes: first.size });
    const rest = this.cutter.finish();
    return this.capped({ kind: 'replace', chunks: rest?.chunks ?? [], bytes: rest?.size ?? 0 });
  }

  /**
   * The last part's bytes count only once api.video has acknowledged it: a tail that would bring
   * the offset to the length keeps all but its final byte, which the client then sends again.
   */
  private capped(tail: TailChange): TailChange {
    const length = this.declaredLength;
    const { state, carried } = this.request;
    const before = tail.kind === 'append' ? (carried?.bytes ?? 0) : 0;
    if (length === undefined || state.ackedBytes + before + tail.bytes < length) return tail;
    const keep = length - 1 - state.ackedBytes - before;
    return {
      kind: tail.kind,
      chunks: truncate(tail.chunks, Math.max(0, keep)),
      bytes: Math.max(0, keep),
    };
  }

  /** A stream error we did not cause ourselves (by aborting) is the body's fault. */
  private classifyStreamError(err: unknown): unknown {
    if (this.signal.aborted) return this.signal.reason;
    if (isRelayError(err)) return err;
    return this.request.classifyStreamError?.(err) ?? err;
  }

  private hold(delta: number): void {
    this.held += delta;
    this.observer.held(delta);
  }

  dispose(): void {
    this.hold(-this.held);
    // Whatever this transfer still has reserved goes back (its bytes are dropped, or kept by the
    // adapter as a tus tail, outside the budget: at most one part per resumable session).
    this.cutter.close();
    this.earlyRoom?.release();
    this.account.close();
    this.idle.dispose();
    this.signal.removeEventListener('abort', this.stopReading);
  }
}

/** The smaller of two limits, where 0 or undefined means none. */
function effectiveMax(engine: number, upload: number | undefined): number {
  if (!upload) return engine;
  return engine > 0 ? Math.min(engine, upload) : upload;
}

function truncate(chunks: Buffer[], bytes: number): Buffer[] {
  const kept: Buffer[] = [];
  let left = bytes;
  for (const chunk of chunks) {
    if (left <= 0) break;
    kept.push(chunk.length <= left ? chunk : chunk.subarray(0, left));
    left -= chunk.length;
  }
  return kept;
}
