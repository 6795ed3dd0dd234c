import type { Redis } from 'ioredis';
import {
  RETAIN_AFTER_EXPIRY_MS,
  type ConsumeResult,
  type TokenUploadRef,
  type UploadTokenRecord,
  type UploadTokenStore,
} from './upload-token-store';

/**
 * One Lua script decides and counts a use, so two replicas racing for a token's last use cannot
 * both win: Redis runs a script alone. The use is held under its own field of the token's hash
 * (ARGV[2]), so it expires with the token. Returns the state found and the record.
 */
const CONSUME = `
local v = redis.call('HMGET', KEYS[1], 'record', 'expiresAt', 'maxUses', 'uses', 'revoked')
if not v[1] then return {'unknown'} end
local state = 'active'
if v[5] == '1' then state = 'revoked'
elseif tonumber(ARGV[1]) >= tonumber(v[2]) then state = 'expired'
elseif tonumber(v[4]) >= tonumber(v[3]) then state = 'used_up' end
local uses = tonumber(v[4])
if state == 'active' then
  uses = redis.call('HINCRBY', KEYS[1], 'uses', 1)
  redis.call('HSET', KEYS[1], ARGV[2], '1')
end
return {state, v[1], tostring(uses), v[5]}
`;

/** A use comes back only while its field is there, and the field goes with it: at most once. */
const REFUND = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'uses') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'uses', -1)
end
return 1
`;

type Consume = (key: string, now: string, use: string) => Promise<string[]>;

/**
 * Tokens in Redis: a hash per token under `{prefix}t:{sha256}` with the immutable record as JSON
 * and the mutable counters beside it, and `{prefix}id:{id}` → sha256 for the public id. Both
 * expire a day after the token does.
 */
export class RedisUploadTokenStore implements UploadTokenStore {
  private readonly consumeScript: Consume;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {
    const name = 'uploadTokenConsume';
    if (!(name in redis)) redis.defineCommand(name, { numberOfKeys: 1, lua: CONSUME });
    this.consumeScript = (redis as unknown as Record<string, Consume>)[name]!.bind(redis);
  }

  async create(hash: string, record: UploadTokenRecord): Promise<void> {
    const { uses, revoked, ...fixed } = record;
    const keepUntil = record.expiresAt + RETAIN_AFTER_EXPIRY_MS;
    await this.redis
      .multi()
      .hset(this.tokenKey(hash), {
        record: JSON.stringify(fixed),
        expiresAt: String(record.expiresAt),
        maxUses: String(record.maxUses),
        uses: String(uses),
        revoked: revoked ? '1' : '0',
      })
      .pexpireat(this.tokenKey(hash), keepUntil)
      .set(this.idKey(record.id), hash, 'PXAT', keepUntil)
      .exec()
      .then(failOnError);
  }

  async get(hash: string): Promise<UploadTokenRecord | undefined> {
    const [record, uses, revoked] = await this.redis.hmget(
      this.tokenKey(hash),
      'record',
      'uses',
      'revoked',
    );
    return record ? toRecord(record, uses, revoked) : undefined;
  }

  async hashOfId(id: string): Promise<string | undefined> {
    return (await this.redis.get(this.idKey(id))) ?? undefined;
  }

  async consume(hash: string, now: number, use: string): Promise<ConsumeResult> {
    const [state, record, uses, revoked] = await this.consumeScript(
      this.tokenKey(hash),
      String(now),
      useField(use),
    );
    if (state === 'unknown' || !record) return { state: 'unknown' };
    return { state, record: toRecord(record, uses, revoked) } as ConsumeResult;
  }

  async revoke(hash: string): Promise<void> {
    // HSET on a missing key would create a bare hash without an expiry: only touch one that exists.
    const key = this.tokenKey(hash);
    await this.redis.eval(
      "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'revoked', '1') end",
      1,
      key,
    );
  }

  async refund(hash: string, use: string): Promise<boolean> {
    return (await this.redis.eval(REFUND, 1, this.tokenKey(hash), useField(use))) === 1;
  }

  async keep(hash: string, use: string): Promise<void> {
    await this.redis.hdel(this.tokenKey(hash), useField(use));
  }

  async saveUpload(hash: string, upload: TokenUploadRef): Promise<void> {
    // The uploads hash lives as long as the token does; a token gone takes its uploads with it.
    const expiresAt = await this.redis.hget(this.tokenKey(hash), 'expiresAt');
    if (expiresAt === null) return;
    const keepUntil = Number(expiresAt) + RETAIN_AFTER_EXPIRY_MS;
    const json = JSON.stringify(upload);
    const tx = this.redis.multi().hset(this.uploadsKey(hash), 'latest', json);
    if (upload.videoId !== undefined) tx.hset(this.uploadsKey(hash), `v:${upload.videoId}`, json);
    await tx.pexpireat(this.uploadsKey(hash), keepUntil).exec().then(failOnError);
  }

  async upload(hash: string, videoId?: string): Promise<TokenUploadRef | undefined> {
    const json = await this.redis.hget(
      this.uploadsKey(hash),
      videoId === undefined ? 'latest' : `v:${videoId}`,
    );
    if (!json) return undefined;
    const ref = JSON.parse(json) as Partial<TokenUploadRef>;
    return typeof ref.uploadId === 'string'
      ? {
          uploadId: ref.uploadId,
          ...(typeof ref.videoId === 'string' ? { videoId: ref.videoId } : {}),
        }
      : undefined;
  }

  async close(): Promise<void> {
    // The connection is shared with the resumable sessions' store, which closes it.
  }

  private tokenKey(hash: string): string {
    return `${this.prefix}t:${hash}`;
  }

  private uploadsKey(hash: string): string {
    return `${this.prefix}u:${hash}`;
  }

  private idKey(id: string): string {
    return `${this.prefix}id:${id}`;
  }
}

/** A use's field in the token's hash: beside `record`, `uses` and the rest, never one of them. */
const useField = (use: string) => `use:${use}`;

function toRecord(
  json: string,
  uses: string | null | undefined,
  revoked: string | null | undefined,
): UploadTokenRecord {
  const fixed = JSON.parse(json) as Omit<UploadTokenRecord, 'uses' | 'revoked'>;
  return { ...fixed, uses: Number(uses ?? 0), revoked: revoked === '1' };
}

function failOnError(results: Array<[Error | null, unknown]> | null): void {
  for (const [err] of results ?? []) if (err) throw err;
}
