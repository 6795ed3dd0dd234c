import type { Readable } from 'node:stream';
import { DataStore, ERRORS, Upload } from '@tus/utils';
import type { Logger } from 'pino';
import type { ApiVideoClient } from '../apivideo/client';
import { ApiVideoHttpError } from '../apivideo/errors';
import { RelayError, toProblem } from '../errors';
import { openContainer } from '../upload/container';
import { PartCutter, type Part } from '../upload/part-cutter';
import { toRelayError } from '../upload/upstream-failure';
import type { UploadTarget } from '../upload/video-fields';
import type { SessionStore, UploadSession } from './sessions';

export interface RelayStoreOptions {
  client: ApiVideoClient;
  sessions: SessionStore;
  partSize: number;
  ttlMs: number;
  logger: Logger;
  /** The target an upload's metadata names (validated when it was created). */
  targetOf: (session: UploadSession) => UploadTarget;
}

const EMPTY = Buffer.alloc(0);

/** A tus error @tus/server turns into an answer: our problem+json as its body. */
export function tusError(err: RelayError): { status_code: number; body: string } {
  return { status_code: err.status, body: JSON.stringify(toProblem(err, 'tus')) };
}

/**
 * A tus data store that keeps nothing on disk: bytes go to api.video in parts as they arrive, and
 * the tail shorter than a part waits in the session store between requests. The offset is always
 * `ackedBytes + tail`, computed from the same durable state in write() and getUpload(), so it
 * never goes back and never counts bytes nobody holds.
 */
export class RelayStore extends DataStore {
  /** Owners of uploads being created, handed over by the POST hook (same request, same process). */
  readonly pendingOwners = new Map<string, string>();

  constructor(private readonly options: RelayStoreOptions) {
    super();
    this.extensions = [
      'creation',
      'creation-with-upload',
      'creation-defer-length',
      'termination',
      'expiration',
    ];
  }

  override async create(upload: Upload): Promise<Upload> {
    const owner = this.pendingOwners.get(upload.id) ?? 'anonymous';
    this.pendingOwners.delete(upload.id);
    const session: UploadSession = {
      id: upload.id,
      owner,
      length: upload.size,
      metadata: upload.metadata ?? {},
      videoId: undefined,
      createdContainer: false,
      nextPart: 1,
      ackedBytes: 0,
      completed: false,
      video: undefined,
      createdAt: new Date().toISOString(),
      expiresAt: Date.now() + this.options.ttlMs,
    };
    await this.options.sessions.save(session, EMPTY);
    upload.creation_date = session.createdAt;
    return upload;
  }

  override async getUpload(id: string): Promise<Upload> {
    const stored = await this.options.sessions.load(id);
    if (!stored) throw ERRORS.FILE_NOT_FOUND;
    const { session, tail } = stored;
    return new Upload({
      id,
      size: session.length,
      offset: session.ackedBytes + tail.length,
      metadata: session.metadata,
      creation_date: session.createdAt,
    });
  }

  override async declareUploadLength(id: string, length: number): Promise<void> {
    const stored = await this.options.sessions.load(id);
    if (!stored) throw ERRORS.FILE_NOT_FOUND;
    stored.session.length = length;
    await this.options.sessions.save(stored.session, stored.tail);
  }

  override async write(stream: Readable, id: string, _offset: number): Promise<number> {
    const stored = await this.options.sessions.load(id);
    if (!stored) throw ERRORS.FILE_NOT_FOUND;
    return new PatchWrite(this.options, stored.session, stored.tail).run(stream);
  }

  /** Termination: the session goes, and the container too when we made it and it is unfinished. */
  override async remove(id: string): Promise<void> {
    const stored = await this.options.sessions.load(id);
    if (!stored) throw ERRORS.FILE_NOT_FOUND;
    const { session } = stored;
    if (session.createdContainer && session.videoId && !session.completed) {
      await this.options.client
        .deleteVideo(session.videoId, { signal: AbortSignal.timeout(30_000) })
        .catch((err: unknown) => {
          if (!(err instanceof ApiVideoHttpError && err.status === 404)) throw err;
        });
    }
    await this.options.sessions.remove(id);
  }

  override async deleteExpired(): Promise<number> {
    const ids = await this.options.sessions.expired(Date.now());
    let removed = 0;
    for (const id of ids) {
      try {
        await this.remove(id);
        removed += 1;
      } catch (err) {
        this.options.logger.warn(
          { uploadId: id, err: String(err) },
          'could not remove an expired upload',
        );
      }
    }
    if (removed > 0) this.options.logger.info({ removed }, 'removed expired resumable uploads');
    return removed;
  }

  override getExpiration(): number {
    return this.options.ttlMs;
  }
}

/** One PATCH: the stored tail and the new bytes, cut into parts, sent one at a time. */
class PatchWrite {
  private readonly cutter: PartCutter;
  /** The tail as last saved: what the durable offset counts beyond ackedBytes. */
  private durableTail: Buffer;

  constructor(
    private readonly options: RelayStoreOptions,
    private readonly session: UploadSession,
    tail: Buffer,
  ) {
    this.cutter = new PartCutter(options.partSize, session.nextPart);
    this.durableTail = tail;
  }

  async run(stream: Readable): Promise<number> {
    // Parts cut but not yet acknowledged: on a failure they go back into the tail.
    const pending: Part[] = this.cutter.push(this.durableTail);
    const sendPending = async () => {
      while (pending.length > 0) {
        await this.send(pending[0]!, false);
        pending.shift();
      }
    };
    try {
      await sendPending();
      for await (const chunk of stream) {
        pending.push(...this.cutter.push(chunk as Buffer));
        await sendPending();
      }
      // A client that goes away ends the stream early, without an error: keep what came. The last
      // part is decided only from the declared length.
      const { length, ackedBytes } = this.session;
      if (length !== undefined && ackedBytes + this.cutter.pendingBytes === length) {
        const last = this.cutter.finish();
        if (last) {
          pending.push(last);
          await this.send(last, true);
          pending.shift();
        }
      }
      await this.persist(this.pendingTail());
      return this.offset();
    } catch (err) {
      // Nothing is lost: the unsent part(s) and everything after go back into the tail.
      const unsent = Buffer.concat([...pending.flatMap((p) => p.chunks), this.pendingTail()]);
      await this.persist(unsent).catch(() => undefined);
      throw tusError(toRelayError(err));
    }
  }

  private offset(): number {
    return this.session.ackedBytes + this.durableTail.length;
  }

  private pendingTail(): Buffer {
    const rest = this.cutter.finish();
    return rest ? Buffer.concat(rest.chunks) : EMPTY;
  }

  private async send(part: Part, isLast: boolean): Promise<void> {
    const { client, logger } = this.options;
    if (!this.session.videoId) await this.openContainer();
    const video = await client.uploadPart(this.session.videoId!, part.number, isLast, part.chunks, {
      signal: AbortSignal.timeout(15 * 60_000),
    });
    this.session.ackedBytes += part.size;
    this.session.nextPart = part.number + 1;
    if (isLast) {
      this.session.completed = true;
      this.session.video = video;
    }
    // Bytes after this part are only in memory: the durable offset is ackedBytes until the PATCH
    // ends, so an instance killed now is resumed from there, never past what api.video has.
    await this.persist(EMPTY);
    logger.debug(
      { uploadId: this.session.id, videoId: this.session.videoId, part: part.number, isLast },
      'part acknowledged',
    );
  }

  /** Creates (or checks) the container, and saves its id before the first part goes out. */
  private async openContainer(): Promise<void> {
    const container = await openContainer(this.options.client, this.options.targetOf(this.session));
    this.session.videoId = container.videoId;
    this.session.createdContainer = container.created;
    await this.persist(this.durableTail);
  }

  private async persist(tail: Buffer): Promise<void> {
    await this.options.sessions.save(this.session, tail);
    this.durableTail = tail;
  }
}
