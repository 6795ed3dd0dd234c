/** What a token binds: the video fields an upload with it gets, and its size limit. */
export interface UploadTokenFields {
  maxFileSize?: number;
  title?: string;
  description?: string;
  tags?: string[];
  metadata?: Array<{ key: string; value: string }>;
  playerId?: string;
  public?: boolean;
  videoId?: string;
}

/** A minted token as stored: never the token itself, only under its hash. */
export interface UploadTokenRecord {
  id: string;
  /** The minting principal: the upload's principal in logs, limits and ownership checks. */
  principal: string;
  principalKind: 'token' | 'jwt' | 'anonymous';
  createdAt: number;
  expiresAt: number;
  ttl: number;
  maxUses: number;
  uses: number;
  revoked: boolean;
  fields: UploadTokenFields;
}

export type TokenState = 'active' | 'expired' | 'used_up' | 'revoked';

/** Revoked first, then expired, then used up: the answer names the most lasting reason. */
export function stateOf(record: UploadTokenRecord, now: number): TokenState {
  if (record.revoked) return 'revoked';
  if (now >= record.expiresAt) return 'expired';
  if (record.uses >= record.maxUses) return 'used_up';
  return 'active';
}

/**
 * How long a token is kept after it expires, so its holder is told "expired" (not "unknown") and
 * an upload it started may finish.
 */
export const RETAIN_AFTER_EXPIRY_MS = 24 * 3600 * 1000;

export type ConsumeResult =
  | { state: 'active'; record: UploadTokenRecord }
  | { state: Exclude<TokenState, 'active'> | 'unknown'; record?: UploadTokenRecord };

/**
 * A chunked upload a token started on `POST /upload?token=`: its session id (the upload itself is
 * an upload session, kept and swept with the tus ones), and its video once known. Later chunks
 * may go there and nowhere else.
 */
export interface TokenUploadRef {
  uploadId: string;
  videoId?: string;
}

/** Where tokens live: Redis when REDIS_URL is set (every replica sees them), memory otherwise. */
export interface UploadTokenStore {
  create(hash: string, record: UploadTokenRecord): Promise<void>;
  get(hash: string): Promise<UploadTokenRecord | undefined>;
  /** The hash a public id stands for, while the token is kept. */
  hashOfId(id: string): Promise<string | undefined>;
  /**
   * Atomically: counts one use if the token is active at `now`, held under `use` (a key of the
   * relay's own making, one per upload), and says what it found.
   */
  consume(hash: string, now: number, use: string): Promise<ConsumeResult>;
  revoke(hash: string): Promise<void>;
  /**
   * Gives back the use held under `use` (its upload ended without a video). True when it did: a
   * use comes back once, however often its upload's ending is reported, and never after `keep`.
   */
  refund(hash: string, use: string): Promise<boolean>;
  /** The upload held under `use` completed: its use stays spent and can no longer come back. */
  keep(hash: string, use: string): Promise<void>;
  /** Records an upload of the token (under its video, once known); it becomes the token's latest. */
  saveUpload(hash: string, upload: TokenUploadRef): Promise<void>;
  /** One of the token's uploads by its video, or (no id) its latest. */
  upload(hash: string, videoId?: string): Promise<TokenUploadRef | undefined>;
  close(): Promise<void>;
}

interface TokenUploads {
  latest?: TokenUploadRef;
  byVideo: Map<string, TokenUploadRef>;
}

export class MemoryUploadTokenStore implements UploadTokenStore {
  private readonly tokens = new Map<string, UploadTokenRecord>();
  private readonly ids = new Map<string, string>();
  private readonly uploads = new Map<string, TokenUploads>();
  /** Per token: the uses counted for uploads that have not ended yet. */
  private readonly held = new Map<string, Set<string>>();
  private lastPrune = 0;

  constructor(private readonly now: () => number = Date.now) {}

  async create(hash: string, record: UploadTokenRecord): Promise<void> {
    this.prune();
    this.tokens.set(hash, structuredClone(record));
    this.ids.set(record.id, hash);
  }

  async get(hash: string): Promise<UploadTokenRecord | undefined> {
    const record = this.live(hash);
    return record && structuredClone(record);
  }

  async hashOfId(id: string): Promise<string | undefined> {
    const hash = this.ids.get(id);
    return hash !== undefined && this.live(hash) ? hash : undefined;
  }

  async consume(hash: string, now: number, use: string): Promise<ConsumeResult> {
    const record = this.live(hash);
    if (!record) return { state: 'unknown' };
    const state = stateOf(record, now);
    if (state === 'active') {
      record.uses += 1;
      const held = this.held.get(hash) ?? new Set<string>();
      held.add(use);
      this.held.set(hash, held);
    }
    return { state, record: structuredClone(record) };
  }

  async revoke(hash: string): Promise<void> {
    const record = this.live(hash);
    if (record) record.revoked = true;
  }

  async refund(hash: string, use: string): Promise<boolean> {
    const record = this.live(hash);
    if (!record || !this.held.get(hash)?.delete(use)) return false;
    if (record.uses > 0) record.uses -= 1;
    return true;
  }

  async keep(hash: string, use: string): Promise<void> {
    this.held.get(hash)?.delete(use);
  }

  async saveUpload(hash: string, upload: TokenUploadRef): Promise<void> {
    if (!this.live(hash)) return;
    const entry: TokenUploads = this.uploads.get(hash) ?? { byVideo: new Map() };
    if (upload.videoId !== undefined) entry.byVideo.set(upload.videoId, { ...upload });
    entry.latest = { ...upload };
    this.uploads.set(hash, entry);
  }

  async upload(hash: string, videoId?: string): Promise<TokenUploadRef | undefined> {
    if (!this.live(hash)) return undefined;
    const entry = this.uploads.get(hash);
    const found = videoId === undefined ? entry?.latest : entry?.byVideo.get(videoId);
    return found && { ...found };
  }

  async close(): Promise<void> {}

  private live(hash: string): UploadTokenRecord | undefined {
    const record = this.tokens.get(hash);
    if (record && this.now() >= record.expiresAt + RETAIN_AFTER_EXPIRY_MS) {
      this.tokens.delete(hash);
      this.uploads.delete(hash);
      this.held.delete(hash);
      this.ids.delete(record.id);
      return undefined;
    }
    return record;
  }

  /** Minting is the only way in, so sweeping there keeps the map bounded by live tokens. */
  private prune(): void {
    if (this.now() - this.lastPrune < 60_000) return;
    this.lastPrune = this.now();
    for (const hash of this.tokens.keys()) this.live(hash);
  }
}
