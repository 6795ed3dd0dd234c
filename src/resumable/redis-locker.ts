import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lock, Locker, RequestRelease } from '@tus/utils';
import { ERRORS } from '@tus/utils';
import type { Redis } from 'ioredis';

const TTL_MS = 5_000;
const RENEW_MS = 1_700;
const RETRY_MS = 50;
const PREFIX = 'apivideo-relay:lock:';

// Delete or extend the key only if we still own it: a lock that expired and was taken by another
// instance must not be released or stretched by its old owner.
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/**
 * @tus/server's Locker across instances: `SET key owner NX PX 5000`, renewed while held, so two
 * requests for one upload never interleave, and a lock left by a killed instance expires in
 * seconds. A holder in this process is also asked to let go (tus's requestRelease).
 */
export class RedisLocker implements Locker {
  private readonly localHolders = new Map<string, RequestRelease>();

  constructor(private readonly redis: Redis) {}

  newLock(id: string): Lock {
    return new RedisLock(this.redis, id, this.localHolders);
  }
}

class RedisLock implements Lock {
  private readonly owner = randomUUID();
  private renewal: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly id: string,
    private readonly localHolders: Map<string, RequestRelease>,
  ) {}

  async lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    const key = PREFIX + this.id;
    for (;;) {
      if (signal.aborted) throw ERRORS.ERR_LOCK_TIMEOUT;
      const taken = await this.redis.set(key, this.owner, 'PX', TTL_MS, 'NX');
      if (taken === 'OK') break;
      await this.localHolders.get(this.id)?.();
      await sleep(RETRY_MS);
    }
    this.localHolders.set(this.id, requestRelease);
    this.renewal = setInterval(
      () => void this.redis.eval(RENEW, 1, key, this.owner, TTL_MS).catch(() => undefined),
      RENEW_MS,
    );
    this.renewal.unref();
  }

  async unlock(): Promise<void> {
    clearInterval(this.renewal);
    this.localHolders.delete(this.id);
    await this.redis.eval(RELEASE, 1, PREFIX + this.id, this.owner);
  }
}
