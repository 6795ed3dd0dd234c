import { RelayError, type ErrorCode } from '../kernel/errors';
import type { Principal } from '../http/client-auth';
import type { UploadTokenSpec } from './fields';
import { hashToken, isTokenId, isWellFormedToken, newToken } from './token';
import {
  stateOf,
  type TokenState,
  type UploadTokenRecord,
  type UploadTokenStore,
} from '../stores/upload-token-store';

/** What `GET /v1/upload-tokens/{token}` shows: everything but the token and the hash. */
export interface UploadTokenView {
  id: string;
  status: TokenState;
  createdAt: string;
  expiresAt: string;
  ttl: number;
  maxUses: number;
  uses: number;
  remainingUses: number;
  maxFileSize?: number;
  title?: string;
  description?: string;
  tags?: string[];
  metadata?: Array<{ key: string; value: string }>;
  playerId?: string;
  public?: boolean;
  videoId?: string;
}

const REFUSAL: Record<Exclude<TokenState, 'active'> | 'unknown', [ErrorCode, string]> = {
  unknown: ['upload_token_unknown', 'The upload token is not known here.'],
  expired: ['upload_token_expired', 'The upload token has expired.'],
  used_up: ['upload_token_used_up', 'The upload token has been used as many times as it allows.'],
  revoked: ['upload_token_revoked', 'The upload token was revoked.'],
};

export function tokenRefusal(state: Exclude<TokenState, 'active'> | 'unknown'): RelayError {
  const [code, detail] = REFUSAL[state];
  return new RelayError(code, detail, {
    headers: { 'WWW-Authenticate': 'Bearer realm="upload-relay", error="invalid_token"' },
  });
}

/** Minting, checking and spending upload tokens, on a clock tests can move. */
export class UploadTokens {
  constructor(
    readonly store: UploadTokenStore,
    readonly now: () => number = Date.now,
  ) {}

  async mint(
    principal: Principal,
    spec: UploadTokenSpec,
  ): Promise<{ token: string; record: UploadTokenRecord }> {
    const { token, hash, id } = newToken();
    const createdAt = this.now();
    const record: UploadTokenRecord = {
      id,
      principal: principal.id,
      principalKind: principal.kind,
      createdAt,
      expiresAt: createdAt + spec.ttl * 1000,
      ttl: spec.ttl,
      maxUses: spec.maxUses,
      uses: 0,
      revoked: false,
      fields: spec.fields,
    };
    await this.store.create(hash, record);
    return { token, record };
  }

  /** A token or its public id, as a path names it; undefined for anything else. */
  async find(tokenOrId: string): Promise<{ hash: string; record: UploadTokenRecord } | undefined> {
    let hash: string | undefined;
    if (isWellFormedToken(tokenOrId)) hash = hashToken(tokenOrId);
    else if (isTokenId(tokenOrId)) hash = await this.store.hashOfId(tokenOrId);
    if (hash === undefined) return undefined;
    const record = await this.store.get(hash);
    return record && { hash, record };
  }

  /**
   * Authenticates a bearer upload token. `start`: it must be able to start an upload (active);
   * `continue`: a request within an upload it already started (a tus PATCH, a later chunk) needs
   * only a token that exists and is not revoked, so a single-use token that has been spent, or
   * one that expired during a long upload, still finishes what it began.
   */
  async check(
    token: string,
    mode: 'start' | 'continue',
  ): Promise<{ hash: string; record: UploadTokenRecord }> {
    const hash = hashToken(token);
    const record = isWellFormedToken(token) ? await this.store.get(hash) : undefined;
    if (!record) throw tokenRefusal('unknown');
    const state = stateOf(record, this.now());
    if (state === 'revoked' || (mode === 'start' && state !== 'active')) throw tokenRefusal(state);
    return { hash, record };
  }

  /**
   * Counts one use, atomically across replicas, held under `use` until its upload ends; refuses
   * when another request took the last one.
   */
  async consume(hash: string, use: string): Promise<UploadTokenRecord> {
    const result = await this.store.consume(hash, this.now(), use);
    if (result.state !== 'active') throw tokenRefusal(result.state);
    return result.record;
  }

  async revoke(hash: string): Promise<void> {
    await this.store.revoke(hash);
  }

  view(record: UploadTokenRecord): UploadTokenView {
    return {
      id: record.id,
      status: stateOf(record, this.now()),
      createdAt: new Date(record.createdAt).toISOString(),
      expiresAt: new Date(record.expiresAt).toISOString(),
      ttl: record.ttl,
      maxUses: record.maxUses,
      uses: record.uses,
      remainingUses: Math.max(0, record.maxUses - record.uses),
      ...record.fields,
    };
  }
}
