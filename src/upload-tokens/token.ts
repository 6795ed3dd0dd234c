import { createHash, randomBytes } from 'node:crypto';

/**
 * An upload token is `to_` and 32 base64url characters: 192 random bits, so guessing one is out of
 * reach. Only its SHA-256 is stored (a slow hash buys nothing against 192 random bits), so a leaked
 * Redis dump or memory snapshot holds no usable token. The public id (`utk_…`) is what logs,
 * metrics and webhooks name; it cannot be turned back into the token.
 */
export const TOKEN_PREFIX = 'to_';
export const TOKEN_ID_PREFIX = 'utk_';

const TOKEN = /^to_[A-Za-z0-9_-]{32}$/;
const TOKEN_ID = /^utk_[A-Za-z0-9_-]{16}$/;

export function newToken(): { token: string; hash: string; id: string } {
  const token = TOKEN_PREFIX + randomBytes(24).toString('base64url');
  return {
    token,
    hash: hashToken(token),
    id: TOKEN_ID_PREFIX + randomBytes(12).toString('base64url'),
  };
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** Shape only: whether a bearer credential is meant as an upload token (not whether it is valid). */
export function looksLikeUploadToken(text: string): boolean {
  return text.startsWith(TOKEN_PREFIX);
}

export function isWellFormedToken(text: string): boolean {
  return TOKEN.test(text);
}

export function isTokenId(text: string): boolean {
  return TOKEN_ID.test(text);
}
