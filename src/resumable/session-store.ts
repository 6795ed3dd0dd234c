import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Video } from '../apivideo/types';
import { RelayError } from '../errors';
import type { UploadState } from '../upload/engine';
import type { UploadTarget } from '../upload/video-fields';

/**
 * A resumable upload's durable record. The offset a client is told is always
 * `state.ackedBytes + tailBytes`: bytes api.video acknowledged, plus bytes kept beside the record
 * (the tail, stored apart so that a HEAD or an ownership check never reads it).
 */
export interface UploadSession {
  id: string;
  owner: string;
  /** Undefined while the client defers the length (Upload-Defer-Length). */
  length: number | undefined;
  /** Upload-Metadata as the client sent it, echoed on HEAD. */
  rawMetadata: string | undefined;
  target: UploadTarget;
  state: UploadState;
  tailBytes: number;
  completed: boolean;
  video: Video | undefined;
  createdAt: number;
  expiresAt: number;
  /** The upload token that started it: only that token (or its minter's credentials) reach it. */
  uploadTokenId?: string;
  /** A smaller limit than UPLOAD_MAX_FILE_SIZE, from the upload token. */
  maxFileSize?: number;
}

/** How a save changes the stored tail: untouched, bytes added at its end, or replaced. */
export type TailWrite =
  { kind: 'keep' } | { kind: 'append'; chunks: Buffer[] } | { kind: 'replace'; chunks: Buffer[] };

/**
 * Where sessions live: Redis across instances, or this process's memory (one instance only). The
 * record and its tail change together (one transaction), so an offset never counts bytes nobody
 * holds; a tail is written by appending, so the bytes sent to the store follow the bytes received.
 */
export interface SessionStore {
  readonly kind: 'memory' | 'redis';
  /** Stores a new session unless its owner already has `maxOpen` unfinished ones. */
  create(session: UploadSession, maxOpen: number): Promise<boolean>;
  /** The record only, never the tail. */
  get(id: string): Promise<UploadSession | undefined>;
  tail(id: string): Promise<Buffer[]>;
  /** `tailBytesBefore`: what the record said before this save (keeps the held-bytes total exact). */
  save(session: UploadSession, tail: TailWrite, tailBytesBefore: number): Promise<void>;
  remove(session: UploadSession): Promise<void>;
  /** Ids of sessions whose expiry has passed, oldest first. */
  expired(now: number, limit: number): Promise<string[]>;
  /** Bytes held in tails, all sessions together. */
  heldBytes(): Promise<number>;
  isReady(): boolean;
  close(): Promise<void>;
}

const concat = (chunks: Buffer[]) => (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));

export class MemorySessionStore implements SessionStore {
  readonly kind = 'memory';
  private readonly records = new Map<string, string>();
  private readonly tails = new Map<string, Buffer[]>();
  private held = 0;

  async create(session: UploadSession, maxOpen: number): Promise<boolean> {
    let open = 0;
    for (const json of this.records.values()) {
      const other = JSON.parse(json) as UploadSession;
      if (other.owner === session.owner && !other.completed) open += 1;
    }
    if (open >= maxOpen) return false;
    this.records.set(session.id, JSON.stringify(session));
    return true;
  }

  async get(id: string): Promise<UploadSession | undefined> {
    const json = this.records.get(id);
    return json === undefined ? undefined : (JSON.parse(json) as UploadSession);
  }

  async tail(id: string): Promise<Buffer[]> {
    return [...(this.tails.get(id) ?? [])];
  }

  async save(session: UploadSession, tail: TailWrite, tailBytesBefore: number): Promise<void> {
    this.records.set(session.id, JSON.stringify(session));
    // Copies: the chunks may be views of buffers the caller reuses.
    if (tail.kind === 'append')
      this.tails.set(session.id, [
        ...(this.tails.get(session.id) ?? []),
        ...tail.chunks.map((c) => Buffer.from(c)),
      ]);
    if (tail.kind === 'replace')
      this.tails.set(
        session.id,
        tail.chunks.map((c) => Buffer.from(c)),
      );
    this.held += session.tailBytes - tailBytesBefore;
  }

  async remove(session: UploadSession): Promise<void> {
    const stored = await this.get(session.id);
    this.records.delete(session.id);
    this.tails.delete(session.id);
    if (stored) this.held -= stored.tailBytes;
  }

  async expired(now: number, limit: number): Promise<string[]> {
    return [...this.records.values()]
      .map((json) => JSON.parse(json) as UploadSession)
      .filter((s) => s.expiresAt <= now)
      .sort((a, b) => a.expiresAt - b.expiresAt)
      .slice(0, limit)
      .map((s) => s.id);
  }

  async heldBytes(): Promise<number> {
    return this.held;
  }

  isReady(): boolean {
    return true;
  }

  async close(): Promise<void> {}
}

/** Sessions kept a day past their expiry, so the sweep still finds the container to delete. */
const KEEP_AFTER_EXPIRY_MS = 24 * 3600 * 1000;

// Counts the owner's open sessions and stores the new one in one step, so replicas racing on
// creations cannot go past the cap together.
const CREATE = `
if redis.call('scard', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('sadd', KEYS[1], ARGV[2])
redis.call('pexpire', KEYS[1], ARGV[5])
redis.call('set', KEYS[2], ARGV[3], 'PX', ARGV[5])
redis.call('zadd', KEYS[3], ARGV[4], ARGV[2])
return 1`;

/**
 * Sessions in Redis. Per upload: the record (JSON, small) and the tail (a string that grows by
 * APPEND); beside them, a sorted set of expiries, a set of open uploads per owner (by a hash of
 * the principal, never the principal itself), and the total of bytes held in tails.
 */
export class RedisSessionStore implements SessionStore {
  readonly kind = 'redis';

  constructor(
    private readonly redis: Redis,
    private readonly prefix = 'apivideo-relay:',
  ) {}

  private recordKey = (id: string) => `${this.prefix}upload:${id}`;
  private tailKey = (id: string) => `${this.prefix}upload:${id}:tail`;
  private ownerKey = (owner: string) =>
    `${this.prefix}owner:${createHash('sha256').update(owner).digest('hex').slice(0, 32)}`;
  private get expiryKey() {
    return `${this.prefix}uploads:expiry`;
  }
  private get heldKey() {
    return `${this.prefix}uploads:tail-bytes`;
  }

  async create(session: UploadSession, maxOpen: number): Promise<boolean> {
    const keep = keepMs(session);
    const created = await this.guard(() =>
      this.redis.eval(
        CREATE,
        3,
        this.ownerKey(session.owner),
        this.recordKey(session.id),
        this.expiryKey,
        maxOpen,
        session.id,
        JSON.stringify(session),
        session.expiresAt,
        keep,
      ),
    );
    return created === 1;
  }

  async get(id: string): Promise<UploadSession | undefined> {
    const json = await this.guard(() => this.redis.get(this.recordKey(id)));
    return json === null ? undefined : (JSON.parse(json) as UploadSession);
  }

  async tail(id: string): Promise<Buffer[]> {
    const tail = await this.guard(() => this.redis.getBuffer(this.tailKey(id)));
    return tail && tail.length > 0 ? [tail] : [];
  }

  async save(session: UploadSession, tail: TailWrite, tailBytesBefore: number): Promise<void> {
    const keep = keepMs(session);
    const tx = this.redis
      .multi()
      .set(this.recordKey(session.id), JSON.stringify(session), 'PX', keep);
    const tailKey = this.tailKey(session.id);
    if (tail.kind === 'replace') tx.del(tailKey);
    if (tail.kind !== 'keep' && tail.chunks.length > 0) {
      tx.append(tailKey, concat(tail.chunks)).pexpire(tailKey, keep);
    }
    const delta = session.tailBytes - tailBytesBefore;
    if (delta !== 0) tx.incrby(this.heldKey, delta);
    if (session.completed) tx.srem(this.ownerKey(session.owner), session.id);
    await this.guard(() => tx.exec().then(failOnError));
  }

  async remove(session: UploadSession): Promise<void> {
    const stored = await this.get(session.id);
    const tx = this.redis
      .multi()
      .del(this.recordKey(session.id), this.tailKey(session.id))
      .zrem(this.expiryKey, session.id)
      .srem(this.ownerKey(session.owner), session.id);
    if (stored && stored.tailBytes > 0) tx.decrby(this.heldKey, stored.tailBytes);
    await this.guard(() => tx.exec().then(failOnError));
  }

  async expired(now: number, limit: number): Promise<string[]> {
    return this.guard(() => this.redis.zrangebyscore(this.expiryKey, 0, now, 'LIMIT', 0, limit));
  }

  async heldBytes(): Promise<number> {
    return Number((await this.guard(() => this.redis.get(this.heldKey))) ?? 0);
  }

  isReady(): boolean {
    return this.redis.status === 'ready';
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => undefined);
  }

  /** Redis trouble becomes one answer: 503 session_store_unavailable, never ioredis's words. */
  private async guard<T>(call: () => Promise<T>): Promise<T> {
    if (!this.isReady()) throw unavailable();
    try {
      return await call();
    } catch (err) {
      throw unavailable(err);
    }
  }
}

export function unavailable(cause?: unknown): RelayError {
  return new RelayError(
    'session_store_unavailable',
    'Resumable uploads are unavailable for a moment: the session store cannot be reached. Retry shortly.',
    { cause, headers: { 'Retry-After': '5' } },
  );
}

function keepMs(session: UploadSession): number {
  return Math.max(1, session.expiresAt - Date.now()) + KEEP_AFTER_EXPIRY_MS;
}

function failOnError(results: Array<[Error | null, unknown]> | null): void {
  const failed = results?.find(([err]) => err);
  if (!results || failed) throw failed?.[0] ?? new Error('the Redis transaction was discarded');
}
