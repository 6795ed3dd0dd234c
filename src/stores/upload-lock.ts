import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { RelayError, sessionStoreUnavailable as unavailable } from '../kernel/errors';

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
  /**
   * Waits for the lock, asking its holder (in this process or another) to let go; the holder's
   * `onReleaseRequested` runs when a newer request asks the same of it.
   */
  acquire(id: string, signal: AbortSignal, onReleaseRequested: () => void): Promise<UploadLock>;
  /** The lock if nobody holds it, without asking anyone to let go (the expiry sweep). */
  tryAcquire(id: string): Promise<UploadLock | undefined>;
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
    return this.hold(id, requestRelease);
  }

  /** Becomes the holder if there is none; undefined otherwise. */
  tryClaim(id: string, requestRelease: () => void): (() => void) | undefined {
    return this.holders.has(id) ? undefined : this.hold(id, requestRelease);
  }

  private hold(id: string, requestRelease: () => void): () => void {
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

  async tryAcquire(id: string): Promise<UploadLock | undefined> {
    const release = this.local.tryClaim(id, () => undefined);
    return release && { lost: new AbortController().signal, release: async () => release() };
  }
}

const TTL_MS = 5_000;
const RENEW_MS = 1_700;
const RETRY_MS = 50;

// Delete or extend the key only if we still own it: a lock that expired and was taken by another
// instance must not be released or stretched by its old owner. A renewal that finds a request to
// let go (KEYS[2], set by a waiter on any instance) takes it and answers 2.
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW = `
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('pexpire', KEYS[1], ARGV[2])
if redis.call('del', KEYS[2]) == 1 then return 2 end
return 1`;
/** How often a waiter repeats its request that the holder let go (the request itself expires). */
const ASK_EVERY_MS = 500;

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
    private readonly ready: () => boolean = () => redis.status === 'ready',
  ) {}

  async acquire(
    id: string,
    signal: AbortSignal,
    onReleaseRequested: () => void,
  ): Promise<UploadLock> {
    const releaseLocal = await this.local.claim(id, signal, onReleaseRequested);
    const key = this.key(id);
    const owner = randomUUID();
    try {
      let askedAt = 0;
      for (;;) {
        if (signal.aborted) throw lockedError();
        if (await this.take(key, owner)) {
          // A request to let go that was meant for the previous holder is not meant for us.
          if (askedAt > 0) await this.redis.del(`${key}:release`).catch(() => undefined);
          break;
        }
        // Held by another instance: ask it to let go, as a local holder would be asked.
        if (Date.now() - askedAt >= ASK_EVERY_MS) {
          askedAt = Date.now();
          await this.redis.set(`${key}:release`, '1', 'PX', TTL_MS).catch((err: unknown) => {
            throw unavailable(err);
          });
        }
        await sleep(RETRY_MS);
      }
    } catch (err) {
      releaseLocal();
      throw err;
    }
    return this.held(key, owner, releaseLocal, onReleaseRequested);
  }

  async tryAcquire(id: string): Promise<UploadLock | undefined> {
    const releaseLocal = this.local.tryClaim(id, () => undefined);
    if (!releaseLocal) return undefined;
    const key = this.key(id);
    const owner = randomUUID();
    try {
      if (await this.take(key, owner)) return this.held(key, owner, releaseLocal, () => undefined);
    } catch (err) {
      releaseLocal();
      throw err;
    }
    releaseLocal();
    return undefined;
  }

  private key(id: string): string {
    return `${this.prefix}lock:${id}`;
  }

  private async take(key: string, owner: string): Promise<boolean> {
    if (!this.ready()) throw unavailable();
    const taken = await this.redis.set(key, owner, 'PX', TTL_MS, 'NX').catch((err: unknown) => {
      throw unavailable(err);
    });
    return taken === 'OK';
  }

  private held(
    key: string,
    owner: string,
    releaseLocal: () => void,
    onReleaseRequested: () => void,
  ): UploadLock {
    const lost = new AbortController();
    let renewedAt = Date.now();
    const renewal = setInterval(() => {
      this.redis.eval(RENEW, 2, key, `${key}:release`, owner, TTL_MS).then(
        (result) => {
          if (result === 0) return lost.abort(lockedError());
          renewedAt = Date.now();
          if (result === 2) onReleaseRequested();
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
