import { randomBytes } from 'node:crypto';

export interface TokenPair {
  token_type: 'Bearer';
  expires_in: number;
  access_token: string;
  refresh_token: string;
}

/** Bearer tokens issued by /auth/api-key and /auth/refresh, with a lifetime tests can shorten. */
export class TokenStore {
  private readonly access = new Map<string, number>();
  private readonly refresh = new Set<string>();
  /** How many token pairs were handed out (tests check renewals are shared). */
  issued = 0;

  constructor(private ttlSeconds: number) {}

  setTtl(seconds: number): void {
    this.ttlSeconds = seconds;
  }

  issue(): TokenPair {
    const access = randomBytes(24).toString('base64url');
    const refresh = randomBytes(24).toString('base64url');
    this.access.set(access, Date.now() + this.ttlSeconds * 1000);
    this.refresh.add(refresh);
    this.issued += 1;
    return {
      token_type: 'Bearer',
      expires_in: this.ttlSeconds,
      access_token: access,
      refresh_token: refresh,
    };
  }

  /** A refresh token is good once. */
  renew(refreshToken: string): TokenPair | undefined {
    if (!this.refresh.delete(refreshToken)) return undefined;
    return this.issue();
  }

  isValid(accessToken: string): boolean {
    const expiry = this.access.get(accessToken);
    return expiry !== undefined && expiry > Date.now();
  }

  expireAll(): void {
    for (const token of this.access.keys()) this.access.set(token, 0);
  }
}
