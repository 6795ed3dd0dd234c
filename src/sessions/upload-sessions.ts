import type { Logger } from 'pino';
import { RelayError } from '../kernel/errors';
import type { Checkpoint, UploadIdentity } from '../engine/contract';
import type { Settled, UploadEngine } from '../engine/engine';
import { traceUpload } from '../kernel/trace-points';
import { type SessionStore, type TailWrite } from '../stores/session-store';
import type { UploadLock, UploadLocker } from '../stores/upload-lock';
import { routeOf, type UploadSession } from './session';

/** How many expired ids one sweep looks at, at most (the rest wait for the next sweep). */
const SWEEP_PAGE = 100;
const SWEEP_PAGES = 10;
/** A session the sweep could not end (api.video or Redis away) gets another turn this much later. */
const SWEEP_RETRY_MS = 60_000;

/**
 * The uploads that outlive a request, whatever their route (tus, chunked `/upload?token=`): how
 * their state is saved at the engine's checkpoints, settled with api.video, and ended when they
 * expire. The adapters and the sweep share this one model.
 */
export class UploadSessions {
  constructor(
    readonly store: SessionStore<UploadSession>,
    readonly locker: UploadLocker,
    private readonly engine: UploadEngine,
    private readonly ttlMs: number,
    private readonly logger: Logger,
  ) {}

  identityOf(session: UploadSession): UploadIdentity {
    return {
      uploadId: session.id,
      route: routeOf(session),
      principal: session.owner,
      startedAt: session.createdAt,
      ...(session.uploadTokenId ? { uploadTokenId: session.uploadTokenId } : {}),
      ...(session.tokenUse ? { tokenUse: session.tokenUse } : {}),
    };
  }

  /**
   * When an upload moving now would expire: UPLOAD_SESSION_TTL after its last byte, on a whole
   * second, so that `Upload-Expires` (an HTTP date, to the second) says exactly when it is.
   */
  nextExpiry(): number {
    return Math.ceil((Date.now() + this.ttlMs) / 1000) * 1000;
  }

  /** `Upload-Expires` is the truth: from then on the upload takes no more bytes. */
  isExpired(session: UploadSession, now = Date.now()): boolean {
    return !session.completed && session.expiresAt <= now;
  }

  /**
   * Saves the engine's checkpoints into the session (the caller's object follows): the state, the
   * tail dropped once its bytes are at api.video, the completion with its video, and (`moving`:
   * bytes are arriving) the expiry moved on. `lock`: a save after the lock was lost is refused.
   */
  checkpoint(
    session: UploadSession,
    lock?: UploadLock,
    moving = true,
    onSaved?: (saved: UploadSession) => void,
  ): Checkpoint {
    return async (state, change) => {
      if (lock?.lost.aborted) throw lock.lost.reason;
      const before = session.tailBytes;
      const completed = change.completed !== undefined;
      const tailBytes = change.consumedCarried || completed ? 0 : before;
      const next: UploadSession = {
        ...session,
        state,
        tailBytes,
        completed: session.completed || completed,
        video: change.completed ?? session.video,
        expiresAt: moving ? this.nextExpiry() : session.expiresAt,
      };
      const tail: TailWrite =
        tailBytes === before ? { kind: 'keep' } : { kind: 'replace', chunks: [] };
      await this.store.save(next, tail, before);
      onSaved?.(next);
      session.tailBytes = next.tailBytes;
      session.completed = next.completed;
      session.video = next.video;
      session.expiresAt = next.expiresAt;
    };
  }

  /** Asks api.video about parts nobody saw the end of; may complete the upload. */
  settle(session: UploadSession, logger: Logger, lock?: UploadLock): Promise<Settled> {
    // Every request about an upload asks this first (HEAD too): it names the upload on its span.
    traceUpload(this.identityOf(session), session.state.videoId);
    if (session.completed) return Promise.resolve({ kind: 'completed', video: session.video! });
    return this.engine.reconcile({
      identity: this.identityOf(session),
      target: session.target,
      state: session.state,
      logger,
      checkpoint: this.checkpoint(session, lock, false),
    });
  }

  /**
   * Ends an upload whose time is up (or that its client ended): api.video is asked first when a
   * last part may have landed, and a complete source makes it a completion (the session stays,
   * completed); otherwise the container the relay made is deleted, the outcome reported and the
   * session removed. Throws, leaving everything as it was, when api.video cannot say.
   */
  async end(
    session: UploadSession,
    how: { kind: 'expired' | 'failed'; code: string },
    logger: Logger,
    lock?: UploadLock,
  ): Promise<Settled> {
    const ended = await this.engine.end({
      identity: this.identityOf(session),
      target: session.target,
      state: session.state,
      logger,
      checkpoint: this.checkpoint(session, lock, false),
      code: how.code,
      kind: how.kind,
      bytesReceived: session.state.ledger.ackedBytes + session.tailBytes,
      ifUnsure: 'throw',
    });
    if (ended.kind === 'completed') return ended;
    await this.store.remove(session);
    return { kind: 'open' };
  }

  /**
   * Ends every upload past its expiry. An upload a request is moving is skipped (its next save
   * moves its expiry); an id whose record is gone leaves the index; one that cannot be ended now
   * is tried again later. None of them stops the others from being swept.
   */
  async sweep(now = Date.now()): Promise<number> {
    let ended = 0;
    let skipped = 0;
    for (let page = 0; page < SWEEP_PAGES; page += 1) {
      const ids = await this.store.expired(now, SWEEP_PAGE, skipped);
      for (const id of ids) {
        const outcome = await this.sweepOne(id, now);
        if (outcome === 'ended') ended += 1;
        if (outcome === 'skipped') skipped += 1;
      }
      if (ids.length < SWEEP_PAGE) break;
    }
    if (ended > 0) this.logger.info({ ended }, 'ended expired uploads');
    return ended;
  }

  private async sweepOne(id: string, now: number): Promise<'ended' | 'skipped' | 'gone'> {
    let lock: UploadLock | undefined;
    try {
      lock = await this.locker.tryAcquire(id);
      if (!lock) return 'skipped';
      const session = await this.store.get(id);
      if (!session) {
        await this.store.unindex(id);
        return 'gone';
      }
      if (session.expiresAt > now) {
        await this.store.reschedule(id, session.expiresAt);
        return 'gone';
      }
      if (session.completed) {
        await this.store.remove(session);
        return 'gone';
      }
      await this.end(session, { kind: 'expired', code: 'upload_expired' }, this.logger, lock);
      return 'ended';
    } catch (err) {
      this.logger.warn(
        { event: 'sweep_failed', uploadId: id, err: String(err) },
        'could not end an expired upload; trying again later',
      );
      const moved = await this.store.reschedule(id, now + SWEEP_RETRY_MS).then(
        () => true,
        () => false,
      );
      return moved ? 'gone' : 'skipped';
    } finally {
      await lock?.release();
    }
  }
}

export function expiredError(): RelayError {
  return new RelayError(
    'upload_expired',
    'This upload expired: nothing arrived for longer than the relay keeps an upload open. Start a new one.',
  );
}
