import type { ApiVideoClient } from '../apivideo/client';
import type { RetryEvent } from '../apivideo/transport';
import type { Video } from '../apivideo/types';
import { RelayError, isRelayError, ClientGone } from '../kernel/errors';
import { abortable } from './abortable';
import type { BlockPool } from './block-pool';
import { BudgetedCutter, type HeldPart } from './budgeted-cutter';
import { openContainer } from './container';
import {
  type CheckpointChange,
  type EngineSettings,
  type TailChange,
  type TransferRequest,
  type TransferResult,
  type UploadObserver,
} from './contract';
import { IdleTimer } from './idle-timer';
import {
  partAt,
  recordAcknowledged,
  recordSending,
  recordUploaded,
  recordUnknown,
  type PartLedger,
} from './ledger';
import {
  STEP_BYTES,
  type BudgetAccount,
  type MemoryBudget,
  type Reservation,
} from './memory-budget';
import { PartQueue } from './part-queue';
import { PartSizer } from './part-size';
import { askApiVideo, isAlreadyUploaded } from './reconcile';
import { toRelayError } from './upstream-failure';
import { smallerLimit } from '../kernel/sizes';
import { fileTooLarge } from '../kernel/errors';

/** The process-wide memory every transfer draws on. */
export interface Memory {
  budget: MemoryBudget;
  /** Blocks parts are copied into (UPLOAD_PART_BUFFERING=pooled); none: the client's chunks. */
  pool: BlockPool | undefined;
  /** 1 MiB blocks for big parts (fast clients): fewer socket writes per part. */
  largePool: BlockPool | undefined;
}

/** How long the relay waits for api.video's view of an upload it must settle. */
const RECONCILE_TIMEOUT_MS = 30_000;

/** Stops reading once api.video turned out to hold the whole source already. */
class SourceComplete extends Error {
  constructor() {
    super('api.video holds the whole source');
  }
}

type SentPart = HeldPart & { acked?: boolean };

/** What a part other than the last answers when its answer was found by asking: never read. */
const NOT_READ: Video = { videoId: '' };

/**
 * One request's worth of an upload: its bytes in, parts out, every part number recorded in the
 * ledger before it goes on the wire and cut to the same bytes whenever it is sent again.
 */
export class Transfer {
  /** Our own reasons to stop reading: a part failed, the client idled, the source is complete. */
  private readonly stopInput = new AbortController();
  /** Stops reading (the request's signal, or ours). */
  private readonly signal: AbortSignal;
  /** Abandons the parts on the wire: the process is stopping, or a one-request upload ended. */
  private readonly abandon = new AbortController();
  private readonly partSignal: AbortSignal;
  private readonly account: BudgetAccount;
  private readonly cutter: BudgetedCutter;
  private readonly queue: PartQueue<Video>;
  private readonly idle: IdleTimer;
  private readonly ledger: PartLedger;
  /** Parts cut in this transfer and not yet inside the acknowledged prefix. */
  private readonly open = new Map<number, SentPart>();
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
  /** Client time spent sending the early bytes: their pace. */
  private earlyMs = 0;
  /** Where the next byte of this request goes in the file. */
  private position: number;
  /** The acknowledged prefix when this transfer began: the carried bytes sit right after it. */
  private readonly startedAtByte: number;
  received = 0;
  private held = 0;
  private creation: Promise<{ videoId: string; created: boolean }> | undefined;
  private checkpoints: Promise<void> = Promise.resolve();
  /** Set once api.video is found to hold the whole source (its answer, or its status). */
  private completion: Video | undefined;
  private readonly onRetry = (event: RetryEvent) => {
    this.request.state.retries += 1;
    this.observer.retried(event.reason);
    this.request.logger.info(
      { event: 'upstream_retry', ...event, videoId: this.request.state.videoId },
      'retrying an upstream request',
    );
  };
  private readonly stopReading = () => this.request.file.destroy(this.signal.reason as Error);
  private readonly abandonParts = () => this.abandon.abort(this.request.halt?.reason);

  constructor(
    private readonly client: ApiVideoClient,
    private readonly settings: EngineSettings,
    private readonly observer: UploadObserver,
    memory: Memory,
    private readonly request: TransferRequest,
  ) {
    this.signal = AbortSignal.any([request.signal, this.stopInput.signal]);
    this.signal.addEventListener('abort', this.stopReading, { once: true });
    request.halt?.addEventListener('abort', this.abandonParts, { once: true });
    this.partSignal = this.abandon.signal;
    const { state } = request;
    this.ledger = state.ledger;
    this.carriedLoaded = !request.carried || request.carried.bytes === 0;
    this.startedAtByte = this.ledger.ackedBytes;
    this.position = this.ledger.ackedBytes + (request.carried?.bytes ?? 0);
    // Every part's bytes are held in room reserved from UPLOAD_MEMORY_BUDGET, whatever the route.
    // Pooled blocks go back to the pool only once api.video acknowledged their part, so the
    // unacknowledged parts a resumable upload keeps as its tail are never reused under it.
    this.account = memory.budget.account(request.identity.principal);
    const { end } = request;
    const bound =
      end.kind === 'length' && end.length !== undefined
        ? end.length - this.ledger.ackedBytes
        : request.sizeHint !== undefined
          ? request.sizeHint + (request.carried?.bytes ?? 0)
          : undefined;
    this.cutter = new BudgetedCutter({
      account: this.account,
      sizer: new PartSizer({ max: settings.partSize }),
      pool: memory.pool,
      largePool: memory.largePool,
      firstNumber: this.ledger.ackedParts + 1,
      startAt: this.ledger.ackedBytes,
      maxBytes: bound,
      recorded: (number) => {
        const part = partAt(this.ledger, number);
        return part && { size: part.size, acknowledged: part.state === 'acknowledged' };
      },
    });
    this.queue = new PartQueue(
      settings.partConcurrency,
      (part, isLast) => this.sendPart(part as SentPart, isLast),
      (err) => this.stopInput.abort(err),
    );
    this.idle = new IdleTimer(settings.idleTimeoutMs, () =>
      this.stopInput.abort(
        new RelayError(
          'upload_idle_timeout',
          `No data from the client for ${settings.idleTimeoutMs} ms.`,
        ),
      ),
    );
  }

  /** Never throws for what a client or api.video did: it answers how the request ended. */
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

  /** A resumable upload keeps its parts on the wire going when reading stops; others drop them. */
  private get resumable(): boolean {
    return this.request.checkpoint !== undefined;
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
    const maxFileSize = smallerLimit(this.settings.maxFileSize, this.request.maxFileSize);
    if (maxFileSize > 0 && this.position + chunk.length > maxFileSize) {
      throw fileTooLarge(maxFileSize);
    }
    this.position += chunk.length;
    this.received += chunk.length;
    this.hold(chunk.length);
    this.observer.received(chunk.length);
    if (this.request.state.videoId === undefined) await this.openContainer();
    if (!this.carriedLoaded) {
      this.earlyMs += clientMs;
      const carried = this.request.carried!.bytes;
      // No part can be cut yet: keep the new bytes here, and the carried ones where they are.
      if (
        carried + this.earlyBytes + chunk.length <= this.settings.partSize &&
        this.position !== length
      ) {
        // Room before the bytes are held, growing as they arrive (steps for a slow client); it
        // becomes the first part's.
        const first = Math.min(STEP_BYTES, chunk.length);
        this.earlyRoom ??= await this.account.reserve(first, {
          kind: this.account.stepRoom >= first ? 'step' : 'part',
          signal: this.signal,
        });
        while (this.earlyRoom.room < chunk.length) await this.growEarly(chunk.length);
        this.early.push(chunk);
        this.earlyBytes += chunk.length;
        this.earlyRoom.hold(chunk.length);
        return;
      }
      this.early.push(chunk);
      this.earlyBytes += chunk.length;
      await this.loadCarried(clientMs);
      return;
    }
    await this.cutter.push(chunk, this.release, this.signal, clientMs);
  }

  /** More room for the early bytes: a step, or all that is needed for a client that keeps pace. */
  private async growEarly(needed: number): Promise<void> {
    const room = this.earlyRoom!;
    const minRate = this.account.minRate;
    const fast =
      minRate <= 0 ||
      ((this.earlyBytes >= STEP_BYTES || this.earlyMs >= 1000) &&
        (this.earlyBytes / Math.max(this.earlyMs, 1)) * 1000 >= minRate);
    const missing = needed - room.room;
    // A slow client's room grows in steps while steps are left; then as anyone's does.
    const step = !fast && this.account.stepRoom >= missing;
    await room.grow(missing, { kind: step ? 'step' : 'part', signal: this.signal, slow: !fast });
  }

  private async loadCarried(clientMs = 0): Promise<void> {
    // Room first (for the first part: the carried bytes and the early ones, at most a part), then
    // the bytes: never held unreserved. Early bytes past the first part wait for its room.
    const need = Math.min(this.request.carried!.bytes + this.earlyBytes, this.cutter.nextTarget);
    const room = this.earlyRoom ?? (await this.account.reserve(need, { signal: this.signal }));
    this.earlyRoom = undefined;
    room.unhold();
    if (room.size < need) await room.grow(need - room.size, { signal: this.signal });
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
      if (this.completion) return this.complete(this.completion);
      this.queue.throwIfFailed();
      await this.checkpoints;
      return { kind: 'paused', tail: this.unsentTail() };
    }
    if (!this.carriedLoaded) await this.loadCarried();
    if (this.position === 0) throw new RelayError('empty_file', 'The file has no bytes.');
    const last = this.cutter.finish();
    if (!last) throw new RelayError('internal_error', 'No last part to send.');
    this.open.set(last.number, last);
    if (this.request.bodyComplete) await abortable(this.request.bodyComplete, this.signal);
    const video = await this.queue.finish(last);
    return this.complete(video);
  }

  /**
   * api.video holds the whole source: saved as complete (a resumable upload) before anyone is
   * told. A save that fails leaves the upload as last saved, with its last part unsettled: the
   * next request or the sweep asks api.video again and completes it then.
   */
  private async complete(video: Video): Promise<TransferResult> {
    await this.checkpoints.catch(() => undefined);
    try {
      await this.saveCheckpoint({ completed: video });
    } catch (err) {
      return { kind: 'interrupted', error: toRelayError(err), tail: this.unsentTail() };
    }
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

  /**
   * Puts a part on the wire: its number and bytes go into the ledger first (durably, for a
   * resumable upload), so that whoever comes next sends exactly these bytes under this number.
   */
  private async sendPart(part: SentPart, isLast: boolean): Promise<Video> {
    const { state } = this.request;
    recordSending(this.ledger, {
      number: part.number,
      from: part.from,
      size: part.size,
      last: isLast,
    });
    if (this.resumable) await this.saveCheckpoint();
    const started = performance.now();
    let video: Video;
    try {
      video = await this.client.uploadPart(state.videoId!, part.number, isLast, part.chunks, {
        signal: this.partSignal,
        onRetry: this.onRetry,
      });
    } catch (err) {
      recordUnknown(this.ledger, part.number);
      const found = await this.settleUnseen(part, isLast, err);
      if (found === undefined) throw err;
      if (found !== 'acknowledged') return found;
      await this.acknowledge(part, isLast, started);
      return NOT_READ;
    }
    await this.acknowledge(part, isLast, started);
    return video;
  }

  private async acknowledge(part: SentPart, isLast: boolean, started: number): Promise<void> {
    const seconds = (performance.now() - started) / 1000;
    this.observer.partAcknowledged(part.size, seconds);
    this.request.logger.debug(
      { videoId: this.request.state.videoId, part: part.number, bytes: part.size, isLast, seconds },
      'part acknowledged',
    );
    part.acked = true;
    // api.video has these bytes: they are not held any more, and a pooled buffer goes back at
    // once. Waiting for the parts before it would let reading go on with no buffer to fill.
    this.hold(-part.size);
    part.acknowledged();
    const grew = recordAcknowledged(this.ledger, part.number, part.size);
    this.forgetAcknowledged();
    // The last part's save is the completion's (complete()).
    if (grew && !isLast) await this.saveCheckpoint();
  }

  /**
   * A part whose answer was not seen, or an answer that says the source is complete. Returns the
   * video when api.video holds the whole source, 'acknowledged' when it holds this part, and
   * undefined when the part stays unknown (sent again later, with the same bytes).
   */
  private async settleUnseen(
    part: SentPart,
    isLast: boolean,
    err: unknown,
  ): Promise<Video | 'acknowledged' | undefined> {
    const already = isAlreadyUploaded(err);
    // Abandoned on purpose (a one-request upload that failed, the process stopping): whoever ends
    // the upload asks api.video, if a last part was on the wire.
    if (this.abandon.signal.aborted && !already) return undefined;
    if (!already && !isLast && !isUnseenOutcome(err)) return undefined;
    const { videoId } = this.request.state;
    let holding;
    try {
      holding = await askApiVideo(this.client, videoId!, {
        signal: AbortSignal.any([this.partSignal, AbortSignal.timeout(RECONCILE_TIMEOUT_MS)]),
      });
    } catch (askErr) {
      this.request.logger.warn(
        { event: 'reconcile_failed', videoId, part: part.number, err: String(askErr) },
        'could not ask api.video what it holds; the part stays unknown',
      );
      return undefined;
    }
    this.request.logger.info(
      {
        event: 'reconciled',
        videoId,
        part: part.number,
        cause: already ? 'already_uploaded' : 'unseen_outcome',
        holding: holding.kind,
      },
      'asked api.video what it holds of an upload',
    );
    if (holding.kind === 'uploaded') {
      // A source this upload did not complete (a video the client named had one already).
      if (!recordUploaded(this.ledger)) return undefined;
      this.completion = holding.video;
      this.forgetAcknowledged();
      // Nothing more is read or sent: the source is complete.
      if (!isLast) this.stopInput.abort(new SourceComplete());
      return holding.video;
    }
    // Only the last part's answer is read, and api.video holding the last part means complete.
    if (!isLast && holding.received.includes(part.number)) return 'acknowledged';
    return undefined;
  }

  /** Parts the prefix has swallowed (acknowledged, or found at api.video) give their memory back. */
  private forgetAcknowledged(): void {
    for (const [number, part] of this.open) {
      if (number > this.ledger.ackedParts) continue;
      if (!part.acked) {
        part.acked = true;
        this.hold(-part.size);
        part.acknowledged();
      }
      this.open.delete(number);
    }
  }

  private saveCheckpoint(change: Omit<CheckpointChange, 'consumedCarried'> = {}): Promise<void> {
    const save = this.request.checkpoint;
    if (!save) return Promise.resolve();
    const snapshot = structuredClone(this.request.state);
    // The carried bytes all sit in the first part this transfer cut: once the prefix grew past
    // where it began, they are at api.video and the adapter drops them.
    const consumedCarried =
      change.completed !== undefined ||
      (this.carriedLoaded && this.ledger.ackedBytes > this.startedAtByte);
    this.checkpoints = this.checkpoints.then(() =>
      save(snapshot, { ...change, consumedCarried }).catch((err: unknown) => {
        this.stopInput.abort(err);
        throw err;
      }),
    );
    return this.checkpoints;
  }

  /** Stops reading, lets the parts on the wire settle, and says which bytes to keep. */
  private async interrupted(err: unknown): Promise<TransferResult> {
    this.stopInput.abort(err);
    if (!this.resumable) this.abandon.abort(this.signal.reason);
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
    if (this.completion) return this.complete(this.completion);
    await this.checkpoints.catch(() => undefined);
    const error = reason instanceof ClientGone ? reason : toRelayError(reason);
    return { kind: 'interrupted', error, tail: this.unsentTail() };
  }

  /**
   * The bytes right after the acknowledged prefix that this transfer still holds, at most one
   * part: the first unacknowledged part it cut (the one any carried bytes went into), or the part
   * being filled when none was cut. Less is always safe: the client re-sends from the offset it
   * is told, and a part number already sent is cut to the same bytes again.
   */
  private unsentTail(): TailChange {
    if (!this.carriedLoaded) {
      return this.capped({ kind: 'append', chunks: this.early, bytes: this.earlyBytes });
    }
    const first = this.open.get(this.ledger.ackedParts + 1);
    if (first && !first.acked && first.from === this.ledger.ackedBytes)
      return this.capped({ kind: 'replace', chunks: first.chunks, bytes: first.size });
    const rest = this.cutter.finish();
    if (rest && rest.from === this.ledger.ackedBytes)
      return this.capped({ kind: 'replace', chunks: rest.chunks, bytes: rest.size });
    return { kind: 'replace', chunks: [], bytes: 0 };
  }

  /**
   * The last part's bytes count only once api.video has acknowledged it: a tail that would bring
   * the offset to the length keeps all but its final byte, which the client then sends again.
   */
  private capped(tail: TailChange): TailChange {
    const length = this.declaredLength;
    const { carried } = this.request;
    const acked = this.ledger.ackedBytes;
    const before = tail.kind === 'append' ? (carried?.bytes ?? 0) : 0;
    if (length === undefined || acked + before + tail.bytes < length) return tail;
    const keep = length - 1 - acked - before;
    return {
      kind: tail.kind,
      chunks: truncateChunks(tail.chunks, Math.max(0, keep)),
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
    this.request.halt?.removeEventListener('abort', this.abandonParts);
  }
}

/**
 * A failure after which api.video may hold the part anyway: no answer (reset, timeout, our own
 * abort) or a server error. A 4xx refusal is an answer: the part is not there.
 */
function isUnseenOutcome(err: unknown): boolean {
  const status = (err as { status?: unknown })?.status;
  return typeof status !== 'number' || status >= 500;
}

export function truncateChunks(chunks: Buffer[], bytes: number): Buffer[] {
  const kept: Buffer[] = [];
  let left = bytes;
  for (const chunk of chunks) {
    if (left <= 0) break;
    kept.push(chunk.length <= left ? chunk : chunk.subarray(0, left));
    left -= chunk.length;
  }
  return kept;
}
