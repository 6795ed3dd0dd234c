import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { sessionStoreUnavailable as unavailable } from '../kernel/errors';

/**
 * What the store itself reads of a record: the rest is the caller's (src/sessions/session.ts),
 * stored as JSON and read back through the parser the store is given.
 */
export interface StoredSession {
  id: string;
  owner: string;
  tailBytes: number;
  completed: boolean;
  expiresAt: number;
}

/** Reads a stored record back: undefined when it is not one (another format, a corrupt value). */
export type SessionParser<S> = (json: string) => S | undefined;

/** How a save changes the stored tail: untouched, bytes added at its end, or replaced. */
export type TailWrite =
  { kind: 'keep' } | { kind: 'append'; chunks: Buffer[] } | { kind: 'replace'; chunks: Buffer[] };

/**
 * Where sessions live: Redis across instances, or this process's memory (one instance only). The
 * record and its tail change together (one transaction), so an offset never counts bytes nobody
 * holds; a tail is written by appending, so the bytes sent to the store follow the bytes received.
 * The expiry index follows every save, so an upload that moves is never expired.
 */
export interface SessionStore<S extends StoredSession = StoredSession> {
  readonly kind: 'memory' | 'redis';
  /**
   * Stores a new session unless its id is taken or its owner already has `maxOpen` unfinished
   * ones counted this way (tus). Without `maxOpen` the session is not counted against its owner
   * (a chunked upload, bounded by its token's uses).
   */
  create(session: S, maxOpen?: number): Promise<boolean>;
  /** The record only, never the tail; undefined when missing or of another version. */
  get(id: string): Promise<S | undefined>;
  tail(id: string): Promise<Buffer[]>;
  /** `tailBytesBefore`: what the record said before this save (keeps the held-bytes total exact). */
  save(session: S, tail: TailWrite, tailBytesBefore: number): Promise<void>;
  remove(session: S): Promise<void>;
  /** Ids in the expiry index whose time has passed, oldest first, from the `skip`-th on. */
  expired(now: number, limit: number, skip?: number): Promise<string[]>;
  /** Drops an id from the expiry index (its record is gone). */
  unindex(id: string): Promise<void>;
  /** Moves an id's turn in the expiry index (a sweep that could not end it tries again then). */
  reschedule(id: string, at: number): Promise<void>;
  /** Bytes held in tails: all sessions together, or (`owner`) that principal's. */
  heldBytes(owner?: string): Promise<number>;
  isReady(): boolean;
  close(): Promise<void>;
}

const concat = (chunks: Buffer[]) => (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));

export class MemorySessionStore<S extends StoredSession> implements SessionStore<S> {
  readonly kind = 'memory';
  /** Per owner, its sessions created against a cap and not yet completed (Redis: the owner set). */
  private readonly open = new Map<string, Set<string>>();

  constructor(private readonly parse: SessionParser<S>) {}
  private readonly records = new Map<string, string>();
  private readonly tails = new Map<string, Buffer[]>();
  /** The expiry index: kept apart from the records, as in Redis, so it can outlive them. */
  private readonly expiries = new Map<string, number>();
  private held = 0;
  /** Per owner, the bytes its tails hold; an owner holding none has no entry. */
  private readonly heldBy = new Map<string, number>();

  async create(session: S, maxOpen?: number): Promise<boolean> {
    if (this.records.has(session.id)) return false;
    if (maxOpen !== undefined) {
      const open = this.open.get(session.owner) ?? new Set<string>();
      if (open.size >= maxOpen) return false;
      this.open.set(session.owner, open.add(session.id));
    }
    this.records.set(session.id, JSON.stringify(session));
    this.expiries.set(session.id, session.expiresAt);
    return true;
  }

  async get(id: string): Promise<S | undefined> {
    const json = this.records.get(id);
    return json === undefined ? undefined : this.parse(json);
  }

  async tail(id: string): Promise<Buffer[]> {
    return [...(this.tails.get(id) ?? [])];
  }

  async save(session: S, tail: TailWrite, tailBytesBefore: number): Promise<void> {
    this.records.set(session.id, JSON.stringify(session));
    this.expiries.set(session.id, session.expiresAt);
    if (session.completed) this.uncount(session);
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
    this.hold(session.owner, session.tailBytes - tailBytesBefore);
  }

  async remove(session: S): Promise<void> {
    const stored = await this.get(session.id);
    this.records.delete(session.id);
    this.tails.delete(session.id);
    this.expiries.delete(session.id);
    this.uncount(session);
    if (stored) this.hold(stored.owner, -stored.tailBytes);
  }

  /** No longer counted against its owner's open sessions. */
  private uncount(session: S): void {
    const open = this.open.get(session.owner);
    if (!open?.delete(session.id) || open.size > 0) return;
    this.open.delete(session.owner);
  }

  private hold(owner: string, delta: number): void {
    this.held += delta;
    const mine = (this.heldBy.get(owner) ?? 0) + delta;
    if (mine > 0) this.heldBy.set(owner, mine);
    else this.heldBy.delete(owner);
  }

  async expired(now: number, limit: number, skip = 0): Promise<string[]> {
    return [...this.expiries]
      .filter(([, at]) => at <= now)
      .sort((a, b) => a[1] - b[1])
      .slice(skip, skip + limit)
      .map(([id]) => id);
  }

  async unindex(id: string): Promise<void> {
    this.expiries.delete(id);
  }

  async reschedule(id: string, at: number): Promise<void> {
    if (this.expiries.has(id)) this.expiries.set(id, at);
  }

  async heldBytes(owner?: string): Promise<number> {
    return owner === undefined ? this.held : (this.heldBy.get(owner) ?? 0);
  }

  isReady(): boolean {
    return true;
  }

  async close(): Promise<void> {}
}

/** Sessions kept a day past their expiry, so the sweep still finds the container to delete. */
const KEEP_AFTER_EXPIRY_MS = 24 * 3600 * 1000;

// Counts the owner's open sessions and stores the new one in one step, so replicas racing on
// creations cannot go past the cap together. ARGV[1] = -1: not counted against the owner.
const CREATE = `
local cap = tonumber(ARGV[1])
if cap >= 0 and redis.call('scard', KEYS[1]) >= cap then return 0 end
-- Never over an existing record: an id names one upload for ever.
if not redis.call('set', KEYS[2], ARGV[3], 'PX', ARGV[5], 'NX') then return 0 end
if cap >= 0 then
  redis.call('sadd', KEYS[1], ARGV[2])
  redis.call('pexpire', KEYS[1], ARGV[5])
end
redis.call('zadd', KEYS[3], ARGV[4], ARGV[2])
return 1`;

// An owner's tail bytes move by ARGV[1]; a count back at zero leaves no key behind (principals
// come and go, their counts should not pile up).
const OWNER_HELD = `
local n = redis.call('incrby', KEYS[1], ARGV[1])
if n <= 0 then redis.call('del', KEYS[1]) end
return n`;

// A new turn only for an id still in the index (a removed one is not put back).
const RESCHEDULE = `if redis.call('zscore', KEYS[1], ARGV[1]) then redis.call('zadd', KEYS[1], ARGV[2], ARGV[1]) end`;

/**
 * Sessions in Redis. Per upload: the record (JSON, small) and the tail (a string that grows by
 * APPEND); beside them, a sorted set of expiries, a set of open tus uploads per owner (by a hash
 * of the principal, never the principal itself), and the bytes held in tails: in total, and per
 * owner (under the same hash). Both counts change in the transaction that changes a tail.
 */
export class RedisSessionStore<S extends StoredSession> implements SessionStore<S> {
  readonly kind = 'redis';

  constructor(
    private readonly redis: Redis,
    private readonly parse: SessionParser<S>,
    private readonly prefix = 'apivideo-relay:',
    private readonly ready: () => boolean = () => redis.status === 'ready',
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
  private ownerHeldKey = (owner: string) => `${this.ownerKey(owner)}:tail-bytes`;

  async create(session: S, maxOpen?: number): Promise<boolean> {
    const keep = keepMs(session);
    const created = await this.guard(() =>
      this.redis.eval(
        CREATE,
        3,
        this.ownerKey(session.owner),
        this.recordKey(session.id),
        this.expiryKey,
        maxOpen ?? -1,
        session.id,
        JSON.stringify(session),
        session.expiresAt,
        keep,
      ),
    );
    return created === 1;
  }

  async get(id: string): Promise<S | undefined> {
    const json = await this.guard(() => this.redis.get(this.recordKey(id)));
    return json === null ? undefined : this.parse(json);
  }

  async tail(id: string): Promise<Buffer[]> {
    const tail = await this.guard(() => this.redis.getBuffer(this.tailKey(id)));
    return tail && tail.length > 0 ? [tail] : [];
  }

  async save(session: S, tail: TailWrite, tailBytesBefore: number): Promise<void> {
    const keep = keepMs(session);
    const tx = this.redis
      .multi()
      .set(this.recordKey(session.id), JSON.stringify(session), 'PX', keep)
      .zadd(this.expiryKey, session.expiresAt, session.id);
    const tailKey = this.tailKey(session.id);
    if (tail.kind === 'replace') tx.del(tailKey);
    if (tail.kind !== 'keep' && tail.chunks.length > 0) {
      tx.append(tailKey, concat(tail.chunks)).pexpire(tailKey, keep);
    }
    const delta = session.tailBytes - tailBytesBefore;
    if (delta !== 0)
      tx.incrby(this.heldKey, delta).eval(OWNER_HELD, 1, this.ownerHeldKey(session.owner), delta);
    if (session.completed) tx.srem(this.ownerKey(session.owner), session.id);
    await this.guard(() => tx.exec().then(failOnError));
  }

  async remove(session: S): Promise<void> {
    const stored = await this.get(session.id);
    const tx = this.redis
      .multi()
      .del(this.recordKey(session.id), this.tailKey(session.id))
      .zrem(this.expiryKey, session.id)
      .srem(this.ownerKey(session.owner), session.id);
    if (stored && stored.tailBytes > 0)
      tx.decrby(this.heldKey, stored.tailBytes).eval(
        OWNER_HELD,
        1,
        this.ownerHeldKey(stored.owner),
        -stored.tailBytes,
      );
    await this.guard(() => tx.exec().then(failOnError));
  }

  async expired(now: number, limit: number, skip = 0): Promise<string[]> {
    return this.guard(() => this.redis.zrangebyscore(this.expiryKey, 0, now, 'LIMIT', skip, limit));
  }

  async unindex(id: string): Promise<void> {
    await this.guard(() => this.redis.zrem(this.expiryKey, id));
  }

  async reschedule(id: string, at: number): Promise<void> {
    await this.guard(() => this.redis.eval(RESCHEDULE, 1, this.expiryKey, id, at));
  }

  async heldBytes(owner?: string): Promise<number> {
    const key = owner === undefined ? this.heldKey : this.ownerHeldKey(owner);
    return Number((await this.guard(() => this.redis.get(key))) ?? 0);
  }

  isReady(): boolean {
    return this.ready();
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

function keepMs(session: StoredSession): number {
  return Math.max(1, session.expiresAt - Date.now()) + KEEP_AFTER_EXPIRY_MS;
}

function failOnError(results: Array<[Error | null, unknown]> | null): void {
  const failed = results?.find(([err]) => err);
  if (!results || failed) throw failed?.[0] ?? new Error('the Redis transaction was discarded');
}
