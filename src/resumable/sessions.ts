import type { Redis } from 'ioredis';
import type { Video } from '../apivideo/types';

/**
 * A resumable upload's durable state. The offset a client is told is always
 * `ackedBytes + tail.length`: bytes api.video acknowledged, plus bytes kept here.
 */
export interface UploadSession {
  id: string;
  owner: string;
  /** Undefined while the client defers the length (Upload-Defer-Length). */
  length: number | undefined;
  metadata: Record<string, string | null>;
  videoId: string | undefined;
  createdContainer: boolean;
  nextPart: number;
  ackedBytes: number;
  completed: boolean;
  video: Video | undefined;
  createdAt: string;
  expiresAt: number;
}

export interface StoredUpload {
  session: UploadSession;
  tail: Buffer;
}

/** Where sessions live: Redis across instances, or this process's memory (one instance only). */
export interface SessionStore {
  load(id: string): Promise<StoredUpload | undefined>;
  /** Saves the record and its tail together: never an offset that counts bytes nobody holds. */
  save(session: UploadSession, tail: Buffer): Promise<void>;
  remove(id: string): Promise<void>;
  /** Ids of sessions whose expiry has passed. */
  expired(now: number): Promise<string[]>;
  close(): Promise<void>;
}

export class MemorySessionStore implements SessionStore {
  private readonly uploads = new Map<string, StoredUpload>();

  async load(id: string): Promise<StoredUpload | undefined> {
    const stored = this.uploads.get(id);
    return stored && { session: { ...stored.session }, tail: stored.tail };
  }

  async save(session: UploadSession, tail: Buffer): Promise<void> {
    this.uploads.set(session.id, { session: { ...session }, tail: Buffer.from(tail) });
  }

  async remove(id: string): Promise<void> {
    this.uploads.delete(id);
  }

  async expired(now: number): Promise<string[]> {
    return [...this.uploads.values()]
      .filter((u) => u.session.expiresAt <= now)
      .map((u) => u.session.id);
  }

  async close(): Promise<void> {}
}

const PREFIX = 'apivideo-relay:upload:';
const EXPIRY_INDEX = 'apivideo-relay:uploads:expiry';

/** Sessions in Redis: a hash with the record and the tail, and a sorted set of expiries. */
export class RedisSessionStore implements SessionStore {
  constructor(private readonly redis: Redis) {}

  async load(id: string): Promise<StoredUpload | undefined> {
    const [record, tail] = await this.redis.hmgetBuffer(PREFIX + id, 'record', 'tail');
    if (!record) return undefined;
    return {
      session: JSON.parse(record.toString('utf8')) as UploadSession,
      tail: tail ?? Buffer.alloc(0),
    };
  }

  async save(session: UploadSession, tail: Buffer): Promise<void> {
    const key = PREFIX + session.id;
    // Keep the data a while past the expiry so the sweeper still finds the container to delete.
    const keepMs = Math.max(1, session.expiresAt - Date.now()) + 24 * 3600 * 1000;
    await this.redis
      .multi()
      .hset(key, 'record', JSON.stringify(session), 'tail', tail)
      .pexpire(key, keepMs)
      .zadd(EXPIRY_INDEX, session.expiresAt, session.id)
      .exec()
      .then(failOnError);
  }

  async remove(id: string): Promise<void> {
    await this.redis
      .multi()
      .del(PREFIX + id)
      .zrem(EXPIRY_INDEX, id)
      .exec()
      .then(failOnError);
  }

  async expired(now: number): Promise<string[]> {
    return this.redis.zrangebyscore(EXPIRY_INDEX, 0, now);
  }

  async close(): Promise<void> {
    await this.redis.quit();
  }
}

function failOnError(results: Array<[Error | null, unknown]> | null): void {
  const failed = results?.find(([err]) => err);
  if (!results || failed) throw failed?.[0] ?? new Error('the Redis transaction was discarded');
}
