import type { Video } from '../apivideo/types';
import type { UploadState } from '../engine/contract';
import { emptyLedger, isLedger, type PartLedger } from '../engine/ledger';
import type { UploadRoute } from '../engine/outcome';
import type { UploadTarget } from '../engine/video-fields';

/** What a chunked upload's chunks declared so far (api.video's `Content-Range` forms). */
export interface ChunkProgress {
  /** Set by the first `bytes` chunk: every chunk but the last has this length. */
  chunkSize?: number;
  /** Parts of the upload as declared so far (`part n/m`, or from `bytes …/size`). */
  totalParts?: number;
  /** The file's size, as `bytes …/size` declared it. */
  size?: number;
}

/** The record format: a record of another version is not read as this one. */
export const SESSION_VERSION = 2;

/**
 * An upload that outlives its requests: a tus upload (`/v1/uploads`), or a chunked upload on
 * api.video's own `POST /upload?token=`. One record kind, one ledger, one expiry, one sweep.
 *
 * A tus upload's offset is always `state.ledger.ackedBytes + tailBytes`: bytes api.video
 * acknowledged, plus bytes kept beside the record (the tail, stored apart so that a HEAD or an
 * ownership check never reads it).
 */
export interface UploadSession {
  v: typeof SESSION_VERSION;
  id: string;
  kind: 'tus' | 'chunked';
  owner: string;
  /** Undefined while the client defers the length (Upload-Defer-Length), and for chunks. */
  length: number | undefined;
  /** Upload-Metadata as the client sent it, echoed on HEAD. */
  rawMetadata: string | undefined;
  target: UploadTarget;
  state: UploadState;
  tailBytes: number;
  completed: boolean;
  video: Video | undefined;
  createdAt: number;
  /**
   * UPLOAD_SESSION_TTL after the last byte received: from then on nothing is written to the
   * upload, and the sweep ends it (container deleted, `upload.expired`).
   */
  expiresAt: number;
  /** The upload token that started it: only that token (or its minter's credentials) reach it. */
  uploadTokenId?: string;
  /** The key of the token use it counted: given back when it ends without a video. */
  tokenUse?: string;
  /** A smaller limit than UPLOAD_MAX_FILE_SIZE, from the upload token. */
  maxFileSize?: number;
  /** A chunked upload: what its chunks declared so far. */
  progress?: ChunkProgress;
}

export const routeOf = (session: UploadSession): UploadRoute =>
  session.kind === 'tus' ? 'resumable' : 'upload-token';

/**
 * Reads a stored record: its version and the fields the relay relies on, checked, never cast
 * blindly. A record of the previous format (no version, `nextPart`/`ackedBytes` in its state) is
 * read into the current one.
 */
export function parseSession(json: string): UploadSession | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (!isObject(value)) return undefined;
  const record = value as Record<string, unknown>;
  const state = record.state;
  if (
    typeof record.id !== 'string' ||
    typeof record.owner !== 'string' ||
    !isObject(record.target) ||
    !isObject(state) ||
    typeof record.tailBytes !== 'number' ||
    typeof record.expiresAt !== 'number' ||
    typeof record.createdAt !== 'number'
  )
    return undefined;
  if (record.v === undefined) {
    // The first format: tus only, the acknowledged prefix as nextPart/ackedBytes.
    const old = state as { nextPart?: unknown; ackedBytes?: unknown };
    if (typeof old.nextPart !== 'number' || typeof old.ackedBytes !== 'number') return undefined;
    const ledger: PartLedger = {
      ...emptyLedger(),
      ackedParts: old.nextPart - 1,
      ackedBytes: old.ackedBytes,
      complete: record.completed === true,
    };
    const {
      nextPart: _n,
      ackedBytes: _a,
      clientParts: _c,
      ...rest
    } = state as Record<string, unknown>;
    return {
      ...(record as unknown as UploadSession),
      v: SESSION_VERSION,
      kind: 'tus',
      state: { ...(rest as unknown as UploadState), ledger },
    };
  }
  if (record.v !== SESSION_VERSION) return undefined;
  if (record.kind !== 'tus' && record.kind !== 'chunked') return undefined;
  if (!isLedger((state as { ledger?: unknown }).ledger)) return undefined;
  return record as unknown as UploadSession;
}

function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
