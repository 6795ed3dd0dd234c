/**
 * The engine's contract with the route adapters: what an upload is, what a request hands the
 * engine, and what it gets back. Types only, so that stores and adapters can name them without
 * pulling in the engine.
 */
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Video } from '../apivideo/types';
import type { ClientGone, RelayError } from '../kernel/errors';
import { emptyLedger, type PartLedger } from './ledger';
import type { UploadRoute } from './outcome';
import type { UploadTarget } from './video-fields';

/**
 * What api.video has of an upload, as far as the relay knows. A one-request upload starts from
 * nothing; a resumable one carries it between requests (its session record).
 */
export interface UploadState {
  videoId: string | undefined;
  createdContainer: boolean;
  /** Every part number on the wire, with its bytes and fate (src/engine/ledger.ts). */
  ledger: PartLedger;
  retries: number;
}

export const freshState = (): UploadState => ({
  videoId: undefined,
  createdContainer: false,
  ledger: emptyLedger(),
  retries: 0,
});

export interface UploadIdentity {
  uploadId: string;
  route: UploadRoute;
  principal: string;
  uploadTokenId?: string;
  /**
   * The key under which this upload counted its upload token's use (UploadTokenGrant.consume):
   * its ending gives that use back, unless it completed. Absent when no use was counted.
   */
  tokenUse?: string;
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

/** What changed with a checkpoint, besides the state itself. */
export interface CheckpointChange {
  /** The carried bytes are inside parts now on the wire: the adapter drops them. */
  consumedCarried?: boolean;
  /** api.video holds the whole source: the upload is complete, with this video. */
  completed?: Video;
}

/**
 * Saves an upload's state durably. Called one at a time: before a part goes on the wire (its
 * ledger entry), when the acknowledged prefix grows, and at completion (before the outcome is
 * reported). A failure stops the transfer; the state stays what was last saved.
 */
export type Checkpoint = (state: UploadState, change: CheckpointChange) => Promise<void>;

/** Where the file ends: at the end of the body, or at a declared length (tus; undefined while deferred). */
export type FileEnd = { kind: 'body' } | { kind: 'length'; length: number | undefined };

export interface TransferRequest {
  identity: UploadIdentity;
  target: UploadTarget;
  /** Updated in place as parts go out and are acknowledged. */
  state: UploadState;
  file: Readable;
  /**
   * Stops reading: the client went away, a deadline passed, a newer request took over, the relay
   * is draining. Parts already on the wire of a resumable upload are let finish, so that their
   * fate is known; those of a one-request upload are abandoned with it.
   */
  signal: AbortSignal;
  /** Abandons parts on the wire too (the drain's grace is over: the process is stopping). */
  halt?: AbortSignal;
  logger: Logger;
  /** Only once the file's end is reached does the last part go out, labelled `part N/N`. */
  end: FileEnd;
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
  /** A resumable upload's durable state; without it the upload lives and dies with the request. */
  checkpoint?: Checkpoint;
}

export type TransferResult =
  | { kind: 'completed'; video: Video }
  /** The body ended before the file did (tus): the adapter keeps `tail` and answers the offset. */
  | { kind: 'paused'; tail: TailChange }
  | { kind: 'interrupted'; error: RelayError | ClientGone; tail: TailChange };

/** What the engine reports as bytes move (metrics); every method is cheap and synchronous. */
export interface UploadObserver {
  /** An upload began (once per upload, whatever its route). */
  started(route: UploadRoute): void;
  received(bytes: number): void;
  /** Bytes held in memory went up (positive) or down (negative). */
  held(delta: number): void;
  partAcknowledged(bytes: number, seconds: number): void;
  retried(reason: string): void;
  /** A resumable upload's request ended without the upload ending (it can be resumed). */
  interrupted(route: UploadRoute, code: string): void;
}

export const NO_OBSERVER: UploadObserver = {
  started() {},
  received() {},
  held() {},
  partAcknowledged() {},
  retried() {},
  interrupted() {},
};

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

/** A one-request upload (POST /v1/videos, a whole file on /upload?token=). */
export interface OneRequestUpload {
  identity: UploadIdentity;
  target: UploadTarget;
  file: Readable;
  signal: AbortSignal;
  halt?: AbortSignal;
  logger: Logger;
  bodyComplete?: Promise<void>;
  classifyStreamError?: (err: unknown) => RelayError | undefined;
  maxFileSize?: number;
  sizeHint?: number;
}
