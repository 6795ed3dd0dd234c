import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { type WebhookEventType } from '../kernel/webhook-event-types';

/** One event for one endpoint: endpoints succeed and fail independently, so each has its own. */
export interface Delivery {
  /** `${eventId}.${endpointKey}` */
  id: string;
  eventId: string;
  type: WebhookEventType;
  /** The JSON payload, signed and sent byte for byte as stored. */
  body: string;
  /** A hash of the endpoint's URL (src/webhooks/endpoints.ts): no URL (and no credential in one) is stored. */
  endpoint: string;
  createdAt: number;
  /** Attempts made so far. */
  attempts: number;
}

/** A delivery this worker holds until `leaseMs` ran out; `lease` proves it on complete/reschedule. */
export interface ClaimedDelivery extends Delivery {
  lease: string;
}

export interface OutboxStats {
  pending: number;
  oldestCreatedAt: number | undefined;
}

/**
 * Where events wait until delivered. `add` resolves only once they are stored (the engine awaits it
 * before answering the client). A claimed delivery is due again when its lease runs out, so a
 * worker that dies mid-attempt loses nothing; `complete` and `reschedule` are no-ops for a holder
 * whose lease another worker has taken over.
 */
export interface OutboxStore {
  add(deliveries: Delivery[]): Promise<void>;
  claim(now: number, leaseMs: number, limit: number): Promise<ClaimedDelivery[]>;
  /** Delivered, or given up on: gone from the outbox. */
  complete(delivery: ClaimedDelivery): Promise<void>;
  reschedule(delivery: ClaimedDelivery, dueAt: number, attempts: number): Promise<void>;
  /** When the next delivery is due (leased ones count at their lease's end). */
  nextDueAt(): Promise<number | undefined>;
  stats(): Promise<OutboxStats>;
  close(): Promise<void>;
}

const newLease = () => randomBytes(12).toString('base64url');

interface MemoryEntry {
  delivery: Delivery;
  dueAt: number;
  lease: string;
}

/**
 * This process only: lost on restart, not shared between replicas. Bounded: past `maxEntries` the
 * oldest deliveries are dropped (and reported through `onEvict`) rather than filling the heap.
 */
export class MemoryOutbox implements OutboxStore {
  private readonly entries = new Map<string, MemoryEntry>();

  constructor(
    private readonly options: { maxEntries?: number; onEvict?: (d: Delivery) => void } = {},
  ) {}

  async add(deliveries: Delivery[]): Promise<void> {
    const max = this.options.maxEntries ?? 10_000;
    for (const delivery of deliveries) {
      this.entries.set(delivery.id, { delivery: { ...delivery }, dueAt: Date.now(), lease: '' });
    }
    // A Map iterates in insertion order: the first entries are the oldest.
    for (const [id, entry] of this.entries) {
      if (this.entries.size <= max) break;
      this.entries.delete(id);
      this.options.onEvict?.(entry.delivery);
    }
  }

  async claim(now: number, leaseMs: number, limit: number): Promise<ClaimedDelivery[]> {
    const due = [...this.entries.values()]
      .filter((e) => e.dueAt <= now)
      .sort((a, b) => a.dueAt - b.dueAt)
      .slice(0, limit);
    const lease = newLease();
    return due.map((entry) => {
      entry.dueAt = now + leaseMs;
      entry.lease = lease;
      return { ...entry.delivery, lease };
    });
  }

  async complete(delivery: ClaimedDelivery): Promise<void> {
    if (this.entries.get(delivery.id)?.lease === delivery.lease) this.entries.delete(delivery.id);
  }

  async reschedule(delivery: ClaimedDelivery, dueAt: number, attempts: number): Promise<void> {
    const entry = this.entries.get(delivery.id);
    if (entry?.lease !== delivery.lease) return;
    entry.dueAt = dueAt;
    entry.lease = '';
    entry.delivery.attempts = attempts;
  }

  async nextDueAt(): Promise<number | undefined> {
    let next: number | undefined;
    for (const e of this.entries.values()) if (next === undefined || e.dueAt < next) next = e.dueAt;
    return next;
  }

  async stats(): Promise<OutboxStats> {
    let oldest: number | undefined;
    for (const { delivery } of this.entries.values())
      if (oldest === undefined || delivery.createdAt < oldest) oldest = delivery.createdAt;
    return { pending: this.entries.size, oldestCreatedAt: oldest };
  }

  async close(): Promise<void> {}
}

// Claims the due deliveries atomically: each moves its due time to the lease's end and records the
// lease, so no other replica claims it until the lease runs out (one attempt in flight per delivery).
const CLAIM = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local key = ARGV[5] .. id
  local fields = redis.call('HMGET', key, 'entry', 'attempts')
  if fields[1] then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    redis.call('HSET', key, 'lease', ARGV[4])
    out[#out + 1] = fields[1]
    out[#out + 1] = fields[2]
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
  end
end
return out
`;
const COMPLETE = `
if redis.call('HGET', KEYS[3], 'lease') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
`;
const RESCHEDULE = `
if redis.call('HGET', KEYS[3], 'lease') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[3], 'lease', '', 'attempts', ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return 1
`;

type OutboxRedis = Redis & {
  webhookClaim(...args: Array<string | number>): Promise<string[]>;
  webhookComplete(...args: Array<string | number>): Promise<number>;
  webhookReschedule(...args: Array<string | number>): Promise<number>;
};

/**
 * In Redis, under `prefix`: `due` (a sorted set of delivery ids by due time), `created` (the same
 * ids by creation time, for the oldest pending age) and one hash per delivery. Survives restarts,
 * and any replica sharing the Redis delivers what another one recorded.
 */
export class RedisOutbox implements OutboxStore {
  private readonly redis: OutboxRedis;
  private readonly due: string;
  private readonly created: string;
  private readonly dataPrefix: string;

  constructor(
    redis: Redis,
    private readonly options: {
      prefix: string;
      /** Kept at most this long, a backstop against leaks (the schedule gives up well before). */
      retentionMs?: number;
      /** Quit the connection on close (main.ts gives the outbox a connection of its own). */
      ownsConnection?: boolean;
    },
  ) {
    this.redis = redis as OutboxRedis;
    this.redis.defineCommand('webhookClaim', { numberOfKeys: 2, lua: CLAIM });
    this.redis.defineCommand('webhookComplete', { numberOfKeys: 3, lua: COMPLETE });
    this.redis.defineCommand('webhookReschedule', { numberOfKeys: 3, lua: RESCHEDULE });
    this.due = `${options.prefix}due`;
    this.created = `${options.prefix}created`;
    this.dataPrefix = `${options.prefix}d:`;
  }

  async add(deliveries: Delivery[]): Promise<void> {
    if (deliveries.length === 0) return;
    const now = Date.now();
    const tx = this.redis.multi();
    for (const d of deliveries) {
      const { attempts, ...entry } = d;
      const key = this.dataPrefix + d.id;
      tx.hset(key, 'entry', JSON.stringify(entry), 'attempts', attempts, 'lease', '');
      tx.pexpire(key, this.options.retentionMs ?? 7 * 24 * 3600_000);
      tx.zadd(this.due, now, d.id);
      tx.zadd(this.created, d.createdAt, d.id);
    }
    const results = await tx.exec();
    const failed = results?.find(([err]) => err);
    if (!results || failed) throw failed?.[0] ?? new Error('the outbox transaction was discarded');
  }

  async claim(now: number, leaseMs: number, limit: number): Promise<ClaimedDelivery[]> {
    const lease = newLease();
    const flat = await this.redis.webhookClaim(
      this.due,
      this.created,
      now,
      now + leaseMs,
      limit,
      lease,
      this.dataPrefix,
    );
    const claimed: ClaimedDelivery[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      const entry = JSON.parse(flat[i]!) as Omit<Delivery, 'attempts'>;
      claimed.push({ ...entry, attempts: Number(flat[i + 1] ?? 0), lease });
    }
    return claimed;
  }

  async complete(d: ClaimedDelivery): Promise<void> {
    await this.redis.webhookComplete(this.due, this.created, this.dataPrefix + d.id, d.lease, d.id);
  }

  async reschedule(d: ClaimedDelivery, dueAt: number, attempts: number): Promise<void> {
    await this.redis.webhookReschedule(
      this.due,
      this.created,
      this.dataPrefix + d.id,
      d.lease,
      d.id,
      Math.round(dueAt),
      attempts,
    );
  }

  async nextDueAt(): Promise<number | undefined> {
    const [, score] = await this.redis.zrange(this.due, '0', '0', 'WITHSCORES');
    return score === undefined ? undefined : Number(score);
  }

  async stats(): Promise<OutboxStats> {
    const [pending, oldest] = await Promise.all([
      this.redis.zcard(this.created),
      this.redis.zrange(this.created, '0', '0', 'WITHSCORES'),
    ]);
    return { pending, oldestCreatedAt: oldest[1] === undefined ? undefined : Number(oldest[1]) };
  }

  async close(): Promise<void> {
    if (!this.options.ownsConnection) return;
    // QUIT waits for an answer that an unreachable Redis never gives.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.redis.quit().catch(() => undefined),
      new Promise((resolve) => (timer = setTimeout(resolve, 1000))),
    ]);
    clearTimeout(timer);
    this.redis.disconnect();
  }
}

export interface HoldingOutboxOptions {
  /** Deliveries held at most; past it the oldest are dropped (reported through `onEvict`). */
  maxHeld?: number;
  /** The first delivery of an outage was held. */
  onHold?: (err: unknown) => void;
  /** Held deliveries reached the outbox. */
  onRestored?: (count: number) => void;
  onEvict?: (delivery: Delivery) => void;
}

/**
 * Redis away for a moment must not lose the events of uploads that succeeded: what cannot be
 * stored is held in this process (bounded) and written as soon as the outbox answers again, before
 * anything else is claimed. A crash during the outage still loses what is held.
 */
export class HoldingOutbox implements OutboxStore {
  private held: Delivery[] = [];
  private writing: Promise<void> | undefined;

  constructor(
    private readonly inner: OutboxStore,
    private readonly options: HoldingOutboxOptions = {},
  ) {}

  get heldCount(): number {
    return this.held.length;
  }

  async add(deliveries: Delivery[]): Promise<void> {
    try {
      await this.writeHeld();
      await this.inner.add(deliveries);
    } catch (err) {
      if (this.held.length === 0) this.options.onHold?.(err);
      this.held.push(...deliveries);
      const max = this.options.maxHeld ?? 10_000;
      if (this.held.length > max)
        for (const d of this.held.splice(0, this.held.length - max)) this.options.onEvict?.(d);
    }
  }

  private writeHeld(): Promise<void> {
    if (this.writing) return this.writing;
    if (this.held.length === 0) return Promise.resolve();
    const batch = this.held.splice(0);
    this.writing = this.inner
      .add(batch)
      .then(
        () => this.options.onRestored?.(batch.length),
        (err: unknown) => {
          this.held.unshift(...batch);
          throw err;
        },
      )
      .finally(() => (this.writing = undefined));
    return this.writing;
  }

  async claim(now: number, leaseMs: number, limit: number): Promise<ClaimedDelivery[]> {
    await this.writeHeld();
    return this.inner.claim(now, leaseMs, limit);
  }

  complete(delivery: ClaimedDelivery): Promise<void> {
    return this.inner.complete(delivery);
  }

  reschedule(delivery: ClaimedDelivery, dueAt: number, attempts: number): Promise<void> {
    return this.inner.reschedule(delivery, dueAt, attempts);
  }

  async nextDueAt(): Promise<number | undefined> {
    const next = await this.inner.nextDueAt();
    return this.held.length > 0 ? Date.now() : next;
  }

  async stats(): Promise<OutboxStats> {
    const stats = await this.inner.stats();
    const oldestHeld = this.held.reduce<number | undefined>(
      (min, d) => (min === undefined || d.createdAt < min ? d.createdAt : min),
      undefined,
    );
    const oldest = [stats.oldestCreatedAt, oldestHeld].filter((t): t is number => t !== undefined);
    return {
      pending: stats.pending + this.held.length,
      oldestCreatedAt: oldest.length ? Math.min(...oldest) : undefined,
    };
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
