import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { RelayError } from '../errors';
import { unavailable } from './session-store';

/** Held while a request writes to (or ends) an upload; `lost` fires if it is taken away. */
export interface UploadLock {
  readonly lost: AbortSignal;
  release(): Promise<void>;
}

/**
 * One writer per upload. A newer request for the same upload asks the holder to let go (the
 * holder saves its durable offset and answers): a phone that reconnects after a silent drop must
 * not wait for the old connection's idle timeout.
 */
export interface UploadLocker {
  acquire(id: string, signal: AbortSignal, onReleaseRequested: () => void): Promise<UploadLock>;
}

export function lockedError(): RelayError {
  return new RelayError(
    'upload_locked',
    'Another request is writing to this upload; retry once it has ended.',
    { headers: { 'Retry-After': '1' } },
  );
}

interface LocalHolder {
  requestRelease: () => void;
  released: Promise<void>;
}

/** Holders in this process, asked to let go when a newer request for their upload arrives. */
class LocalHolders {
  private readonly holders = new Map<string, LocalHolder>();

  /**
   * Asks the current holder to let go, waits until it has (or the signal fires), and becomes the
   * holder in the same step, so two waiters never both win. Returns the release function.
   */
  async claim(id: string, signal: AbortSignal, requestRelease: () => void): Promise<() => void> {
    for (let holder = this.holders.get(id); holder; holder = this.holders.get(id)) {
      holder.requestRelease();
      await abortableWait(holder.released, signal);
    }
    let done!: () => void;
    const released = new Promise<void>((resolve) => (done = resolve));
    const holder = { requestRelease, released };
    this.holders.set(id, holder);
    return () => {
      if (this.holders.get(id) === holder) this.holders.delete(id);
      done();
    };
  }
}

function abortableWait(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(lockedError());
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(lockedError());
    signal.addEventListener('abort', onAbort, { once: true });
    void promise.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}

/** One process: the lock is the local holder itself. */
export class MemoryLocker implements UploadLocker {
  private readonly local = new LocalHolders();

  async acquire(
    id: string,
    signal: AbortSignal,
    onReleaseRequested: () => void,
  ): Promise<UploadLock> {
    const release = await this.local.claim(id, signal, onReleaseRequested);
    return { lost: new AbortController().signal, release: async () => release() };
  }
}

const TTL_MS = 5_000;
const RENEW_MS = 1_700;
const RETRY_MS = 50;

// Delete or extend the key only if we still own it: a lock that expired and was taken by another
// instance must not be released or stretched by its old owner.
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/**
 * Across instances: `SET key owner NX PX 5000`, renewed every 1.7 s while held, so a lock left by
 * a killed instance expires in seconds. A renewal that finds the key gone or someone else's
 * fires `lost` (the write stops); so does failing to renew for longer than the TTL.
 */
export class RedisLocker implements UploadLocker {
  private readonly local = new LocalHolders();

  constructor(
    private readonly redis: Redis,
    private readonly prefix = 'apivideo-relay:',
  ) {}

  async acquire(
    id: string,
    signal: AbortSignal,
    onReleaseRequested: () => void,
  ): Promise<UploadLock> {
    const releaseLocal = await this.local.claim(id, signal, onReleaseRequested);
    const key = `${this.prefix}lock:${id}`;
    const owner = randomUUID();
    try {
      for (;;) {
        if (signal.aborted) throw lockedError();
        if (this.redis.status !== 'ready') throw unavailable();
        const taken = await this.redis.set(key, owner, 'PX', TTL_MS, 'NX').catch((err: unknown) => {
          throw unavailable(err);
        });
        if (taken === 'OK') break;
        await sleep(RETRY_MS);
      }
    } catch (err) {
      releaseLocal();
      throw err;
    }
    const lost = new AbortController();
    let renewedAt = Date.now();
    const renewal = setInterval(() => {
      this.redis.eval(RENEW, 1, key, owner, TTL_MS).then(
        (result) => {
          if (result === 1) renewedAt = Date.now();
          else lost.abort(lockedError());
        },
        (err: unknown) => {
          if (Date.now() - renewedAt >= TTL_MS) lost.abort(unavailable(err));
        },
      );
    }, RENEW_MS);
    renewal.unref();
    return {
      lost: lost.signal,
      release: async () => {
        clearInterval(renewal);
        releaseLocal();
        await this.redis.eval(RELEASE, 1, key, owner).catch(() => undefined);
      },
    };
  }
}
